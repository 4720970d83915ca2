//! `--json` everywhere (issue 15): every document unrm prints validates against
//! doc/json-schema.json, and a restore's document says what is on disk.
//!
//! The validator is small and written here, for the part of JSON Schema the schema uses
//! (`type`, `required`, `properties`, `additionalProperties`, `items`, `enum`, `const`,
//! `oneOf`, local `$ref`); a keyword it does not know fails the schema, so nothing is
//! silently left unchecked. Its own tests show it rejects wrong documents.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::{build_tree, saferm_bin, saferm_ok, unescape, unrm, unrm_ok, Outcome, Sandbox};

// ------------------------------------------------------------------ the validator

/// Keywords that only describe (or hold definitions): nothing to check.
const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "title", "description", "$defs"];

/// Check `doc` against `schema`, whose `$ref`s point into `root`; the error names where.
fn validate(root: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err(format!("{at}: the schema is not an object: {schema}"));
    };
    for (key, want) in obj {
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => {
                let target = resolve_ref(root, want)?;
                validate(root, target, doc, at)?;
            }
            "type" => check_type(want, doc, at)?,
            "const" if doc != want => return Err(format!("{at}: {doc} is not {want}")),
            "const" => {}
            "enum" => {
                let options = want.as_array().ok_or(format!("{at}: enum is not a list"))?;
                if !options.contains(doc) {
                    return Err(format!("{at}: {doc} is none of {want}"));
                }
            }
            "required" => {
                let names = want
                    .as_array()
                    .ok_or(format!("{at}: required not a list"))?;
                for n in names {
                    let n = n
                        .as_str()
                        .ok_or(format!("{at}: a required name not a string"))?;
                    if doc.as_object().is_some_and(|o| !o.contains_key(n)) {
                        return Err(format!("{at}: {n:?} is missing"));
                    }
                }
            }
            "properties" => check_properties(root, want, doc, at)?,
            "additionalProperties" => check_additional(root, obj, want, doc, at)?,
            "items" => {
                for (i, item) in doc.as_array().into_iter().flatten().enumerate() {
                    validate(root, want, item, &format!("{at}[{i}]"))?;
                }
            }
            "oneOf" => {
                let options = want.as_array().ok_or(format!("{at}: oneOf not a list"))?;
                let errors: Vec<String> = options
                    .iter()
                    .filter_map(|s| validate(root, s, doc, at).err())
                    .collect();
                let matched = options.len() - errors.len();
                if matched != 1 {
                    return Err(format!(
                        "{at}: matches {matched} of oneOf, not one: {}",
                        errors.join(" | ")
                    ));
                }
            }
            other => return Err(format!("{at}: the validator does not know {other:?}")),
        }
    }
    Ok(())
}

/// `#/$defs/NAME` (the only form the schema uses).
fn resolve_ref<'a>(root: &'a Value, r: &Value) -> Result<&'a Value, String> {
    let r = r.as_str().ok_or("a $ref is not a string")?;
    let pointer = r
        .strip_prefix('#')
        .ok_or(format!("{r}: only local $refs are known"))?;
    root.pointer(pointer)
        .ok_or(format!("{r}: no such definition"))
}

fn check_type(want: &Value, doc: &Value, at: &str) -> Result<(), String> {
    let names: Vec<&Value> = match want {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    let is = |name: &str| match name {
        "object" => Ok(doc.is_object()),
        "array" => Ok(doc.is_array()),
        "string" => Ok(doc.is_string()),
        "boolean" => Ok(doc.is_boolean()),
        "null" => Ok(doc.is_null()),
        "integer" => Ok(doc.is_u64() || doc.is_i64()),
        "number" => Ok(doc.is_number()),
        other => Err(format!("{at}: unknown type {other:?}")),
    };
    for n in &names {
        if is(n.as_str().ok_or(format!("{at}: a type is not a string"))?)? {
            return Ok(());
        }
    }
    Err(format!("{at}: {doc} is not of type {want}"))
}

fn check_properties(root: &Value, props: &Value, doc: &Value, at: &str) -> Result<(), String> {
    let props = props
        .as_object()
        .ok_or(format!("{at}: properties not an object"))?;
    let Some(obj) = doc.as_object() else {
        return Ok(()); // `type` says whether it must be an object
    };
    for (name, value) in obj {
        if let Some(s) = props.get(name) {
            validate(root, s, value, &format!("{at}.{name}"))?;
        }
    }
    Ok(())
}

fn check_additional(
    root: &Value,
    schema: &serde_json::Map<String, Value>,
    want: &Value,
    doc: &Value,
    at: &str,
) -> Result<(), String> {
    let known = schema.get("properties").and_then(Value::as_object);
    for (name, value) in doc.as_object().into_iter().flatten() {
        if known.is_some_and(|k| k.contains_key(name)) {
            continue;
        }
        match want {
            Value::Bool(true) => {}
            Value::Bool(false) => return Err(format!("{at}: {name:?} is not in the schema")),
            s => validate(root, s, value, &format!("{at}.{name}"))?,
        }
    }
    Ok(())
}

/// doc/json-schema.json, parsed.
fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/json-schema.json");
    let text = fs::read_to_string(&path).expect("doc/json-schema.json");
    serde_json::from_str(&text).expect("doc/json-schema.json is JSON")
}

/// `out`'s stdout as one JSON document of `kind` that the schema takes.
fn document(out: &Outcome, kind: &str) -> Value {
    let text = out.stdout_text();
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{text}"));
    let s = schema();
    // Against its kind's definition first, for a message that says where; then against the
    // whole schema, which must take it as that kind and no other.
    let own = &s["$defs"][kind];
    assert!(own.is_object(), "the schema defines no {kind:?}");
    for (what, against) in [(kind, own), ("any kind", &s)] {
        if let Err(e) = validate(&s, against, &doc, "$") {
            panic!("the document does not match {what} in doc/json-schema.json: {e}\n{doc:#}");
        }
    }
    assert_eq!(doc["kind"], kind, "{doc:#}");
    assert_eq!(doc["version"], 1, "{doc:#}");
    doc
}

/// A change that makes a good document wrong.
type Patch = dyn Fn(&mut Value);

#[test]
fn the_validator_takes_what_matches_and_rejects_what_does_not() {
    let root = json!({
        "$defs": { "p": { "type": "object", "properties": { "path": { "type": "string" } },
                          "additionalProperties": false } },
        "type": "object",
        "required": ["version", "kind", "n", "paths"],
        "properties": {
            "version": { "const": 1 },
            "kind": { "enum": ["a", "b"] },
            "n": { "type": ["integer", "null"] },
            "paths": { "type": "array", "items": { "$ref": "#/$defs/p" } },
            "either": { "oneOf": [ { "type": "string" }, { "type": "integer" } ] }
        },
        "additionalProperties": false
    });
    let ok = |doc: Value| validate(&root, &root, &doc, "$");
    let good = json!({"version": 1, "kind": "a", "n": 3, "paths": [{"path": "/x"}], "either": 2});
    assert_eq!(ok(good.clone()), Ok(()));
    assert_eq!(
        ok(json!({"version": 1, "kind": "b", "n": null, "paths": []})),
        Ok(())
    );
    let wrong = |patch: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        patch(&mut doc);
        ok(doc)
    };
    let cases: [(&str, &Patch); 9] = [
        ("is not 1", &|d| d["version"] = json!(2)),
        ("is none of", &|d| d["kind"] = json!("c")),
        ("is not of type", &|d| d["n"] = json!("3")),
        ("is not of type", &|d| d["n"] = json!(1.5)),
        ("is missing", &|d| {
            d.as_object_mut().map(|o| o.remove("paths"));
        }),
        ("is not in the schema", &|d| d["extra"] = json!(true)),
        ("is not in the schema", &|d| {
            d["paths"][0]["mode"] = json!(1)
        }),
        ("is not of type", &|d| d["paths"][0]["path"] = json!(7)),
        ("matches 0 of oneOf", &|d| d["either"] = json!(false)),
    ];
    for (why, patch) in cases {
        let err = wrong(patch).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
    assert!(ok(json!([])).is_err(), "an array is not the object");
    // Both branches of a oneOf matching is not one.
    let both = json!({ "oneOf": [ { "type": "integer" }, { "type": "number" } ] });
    assert!(validate(&both, &both, &json!(1), "$").is_err());
    // A keyword the validator does not know fails, rather than checking nothing.
    let unknown = json!({ "minimum": 3 });
    assert!(validate(&unknown, &unknown, &json!(1), "$").is_err());
    let dangling = json!({ "$ref": "#/$defs/none" });
    assert!(validate(&dangling, &dangling, &json!(1), "$").is_err());
}

#[test]
fn the_schema_rejects_a_document_of_no_kind_and_an_undocumented_field() {
    let s = schema();
    let check = |doc: &Value| validate(&s, &s, doc, "$");
    let stats_like = json!({"version": 1, "kind": "nope"});
    assert!(check(&stats_like).is_err());
    let purge = json!({"version": 1, "kind": "purge", "dry_run": true, "deletions": [],
                       "archive_bytes": 0, "finished_interrupted": []});
    assert_eq!(check(&purge), Ok(()));
    let mut extra = purge.clone();
    extra["surprise"] = json!(1);
    assert!(check(&extra).is_err());
    let mut old = purge;
    old["version"] = json!(0);
    assert!(check(&old).is_err());
}

// ------------------------------------------------------------------ the store

/// A store with three deletions made in `w`: a tree `d` (a dir, files, a symlink), a file
/// `f` deleted twice (two versions), and a file with a name that is not UTF-8.
fn store(sb: &Sandbox) -> std::path::PathBuf {
    let w = sb.work("w");
    build_tree(&w, &["d/a=hello", "d/s/b=xy", "d/l->a", "f=one"]);
    saferm_ok(sb, &w, &["-r", "d"]);
    saferm_ok(sb, &w, &["f"]);
    fs::write(w.join("f"), "second").expect("write");
    saferm_ok(sb, &w, &["f"]);
    build_tree(&w, &["n\\xffm=bytes"]);
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .arg(unescape("n\\xffm"))
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    w
}

/// unrm ARGS in `w`, with the exit status it must have.
fn run(sb: &Sandbox, w: &Path, args: &[&str], code: i32) -> Outcome {
    let out = unrm(sb, w, args);
    assert_eq!(
        out.code(),
        Some(code),
        "unrm {args:?}\nstdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    out
}

#[test]
fn every_document_unrm_prints_matches_the_schema() {
    let sb = Sandbox::new();
    let w = store(&sb);
    let list = document(&unrm_ok(&sb, &w, &["--list", "--json"]), "list");
    let items = list["deletions"].as_array().expect("deletions");
    assert_eq!(items.len(), 4, "{list:#}");
    // `unrm --json` alone: the newest deletions, as a listing.
    let recent = document(&unrm_ok(&sb, &w, &["--json"]), "list");
    assert_eq!(recent["deletions"], list["deletions"], "{recent:#}");
    let id = items[0]["id"].as_str().expect("id").to_string();
    let show = document(&unrm_ok(&sb, &w, &["--show", &id, "--json"]), "show");
    assert_eq!(show["id"], id.as_str());
    // The newest deletion's name is not UTF-8: its path comes as base64.
    assert_eq!(
        show["entries"][0]["path_b64"],
        b64(&w.join("n\u{0}m")),
        "{show:#}"
    );
    // (By its absolute path: a bare `d` is also a part of the sandbox's path.)
    let d = w.join("d");
    let d = d.to_str().expect("utf-8");
    let by_name = document(&unrm_ok(&sb, &w, &["--show", d, "--json"]), "show");
    assert_eq!(by_name["totals"]["files"], 2, "{by_name:#}");
    document(&unrm_ok(&sb, &w, &["--list", "d", "--json"]), "list");
    document(&unrm_ok(&sb, &w, &["--check", "--json"]), "check");
    document(&unrm_ok(&sb, &w, &["--stats", "--json"]), "stats");
    let dry = document(
        &unrm_ok(&sb, &w, &["--purge", "--dry-run", "--keep", "0", "--json"]),
        "purge",
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deletions"].as_array().map(Vec::len), Some(4));
    // Restores of every kind: in place, --to, --last, a NAME that is not there.
    document(&unrm_ok(&sb, &w, &["d", "--json"]), "restore");
    let to = sb.work("out");
    let to_arg = to.to_str().expect("utf-8");
    document(
        &unrm_ok(&sb, &w, &["--to", to_arg, "f", "--json"]),
        "restore",
    );
    document(&unrm_ok(&sb, &w, &["--last", "--json"]), "restore");
    let missing = document(&run(&sb, &w, &["nothing-such", "--json"], 1), "restore");
    assert_eq!(missing["ok"], false);
    // A real purge, by id.
    let purged = document(&unrm_ok(&sb, &w, &["--purge", &id, "--json"]), "purge");
    assert_eq!(purged["deletions"][0]["purged"], true);
    assert_eq!(purged["deletions"][0]["reason"], "asked");
}

/// A path's bytes in standard base64, as `path_b64` holds them (`\0` stands for `\xff`).
fn b64(path: &Path) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = path
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| if b == 0 { 0xff } else { b })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ------------------------------------------------------------------ restore values

/// The one target of the one deletion of a restore document.
fn only_target(doc: &Value) -> &Value {
    let deletions = doc["deletions"].as_array().expect("deletions");
    assert_eq!(deletions.len(), 1, "{doc:#}");
    let targets = deletions[0]["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{doc:#}");
    &targets[0]
}

fn tally(objects: u64, files: u64, bytes: u64) -> Value {
    json!({ "objects": objects, "files": files, "bytes": bytes })
}

fn path_of(p: &Path) -> Value {
    json!({ "path": p.to_str().expect("utf-8") })
}

#[test]
fn a_restore_document_counts_what_it_wrote_and_what_was_there_already() {
    let sb = Sandbox::new();
    let w = store(&sb);
    let out = unrm_ok(&sb, &w, &["d", "--json"]);
    assert!(out.stderr_text().is_empty(), "{}", out.stderr_text());
    let doc = document(&out, "restore");
    let t = only_target(&doc);
    // On disk: d, d/s (dirs), d/a, d/s/b (7 bytes of files), d/l.
    assert_eq!(fs::read(w.join("d/a")).expect("restored"), b"hello");
    assert_eq!(fs::read(w.join("d/s/b")).expect("restored"), b"xy");
    assert!(fs::symlink_metadata(w.join("d/l")).is_ok_and(|m| m.is_symlink()));
    assert_eq!(t["state"], "restored", "{doc:#}");
    assert_eq!(t["source"], path_of(&w.join("d")));
    assert_eq!(t["destination"], path_of(&w.join("d")));
    assert_eq!(t["restored"], tally(5, 2, 7), "{doc:#}");
    assert_eq!(t["already_there"], tally(0, 0, 0));
    assert_eq!(doc["totals"]["restored"], tally(5, 2, 7));
    assert_eq!(doc["ok"], true);
    let d = &doc["deletions"][0];
    let listed = crate::common::deletions(&sb);
    let made = listed
        .iter()
        .find(|x| x["id"] == d["id"])
        .expect("the deletion is listed");
    assert_eq!(d["created"], made["created"]);
    assert_eq!(d["error"], Value::Null);
    assert_eq!(d["method"], "archive");

    // Again: nothing is written, all of it is there.
    let doc = document(&unrm_ok(&sb, &w, &["d", "--json"]), "restore");
    let t = only_target(&doc);
    assert_eq!(t["state"], "already_there", "{doc:#}");
    assert_eq!(t["restored"], tally(0, 0, 0));
    assert_eq!(t["already_there"], tally(5, 2, 7));
}

#[test]
fn a_restore_document_says_which_version_and_how_many_older_ones() {
    let sb = Sandbox::new();
    let w = store(&sb);
    let doc = document(&unrm_ok(&sb, &w, &["f", "--json"]), "restore");
    let t = only_target(&doc);
    assert_eq!(fs::read(w.join("f")).expect("restored"), b"second");
    assert_eq!(t["older_versions"], 1, "{doc:#}");
    assert_eq!(t["restored"], tally(1, 1, 6));
    // The newest deletion of f is the one restored.
    let newest_f = crate::common::deletions(&sb)
        .into_iter()
        .find(|x| x["operands"][0]["given"]["path"] == "f")
        .expect("f was deleted");
    assert_eq!(doc["deletions"][0]["id"], newest_f["id"]);
}

#[test]
fn a_conflict_and_a_rename_are_in_the_document_and_nothing_else_is_on_stdout() {
    let sb = Sandbox::new();
    let w = store(&sb);
    build_tree(&w, &["d/a=other"]);
    let out = run(&sb, &w, &["d", "--json"], 1);
    assert!(
        out.stderr_text().contains("something else is there"),
        "errors stay on stderr: {}",
        out.stderr_text()
    );
    let doc = document(&out, "restore");
    let t = only_target(&doc);
    assert_eq!(t["state"], "conflict", "{doc:#}");
    assert_eq!(t["conflicts"], json!([path_of(&w.join("d/a"))]));
    assert_eq!(fs::read(w.join("d/a")).expect("kept"), b"other");
    // The rest came back: d (there already, restored into), s, s/b, l.
    assert_eq!(t["restored"], tally(3, 1, 2), "{doc:#}");
    assert_eq!(t["already_there"], tally(1, 0, 0), "{doc:#}");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["totals"]["conflicts"], 1);

    let doc = document(&unrm_ok(&sb, &w, &["--rename", "f", "--json"]), "restore");
    // f is not there: it comes back as f. Then it is there, and comes back beside it.
    assert_eq!(only_target(&doc)["renamed"], false);
    let doc = document(&unrm_ok(&sb, &w, &["--rename", "f", "--json"]), "restore");
    let t = only_target(&doc);
    assert_eq!(t["renamed"], true, "{doc:#}");
    assert_eq!(t["destination"], path_of(&w.join("f.~1~")));
    assert_eq!(t["state"], "restored");
    assert_eq!(fs::read(w.join("f.~1~")).expect("beside"), b"second");
}

#[test]
fn a_failed_target_says_why_and_a_name_not_found_is_unresolved() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["p/q=data"]);
    saferm_ok(&sb, &w, &["p/q"]);
    // Its parent is a file now: p/q cannot be made.
    fs::remove_dir(w.join("p")).expect("rmdir");
    fs::write(w.join("p"), "in the way").expect("write");
    let out = run(&sb, &w, &["p/q", "gone", "--json"], 1);
    let doc = document(&out, "restore");
    let t = only_target(&doc);
    assert_eq!(t["state"], "failed", "{doc:#}");
    let failure = &t["failures"][0];
    assert_eq!(failure["path"], w.join("p/q").to_str().expect("utf-8"));
    assert!(
        failure["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty() && out.stderr_text().contains(r)),
        "the reason is the one said on stderr: {doc:#}\n{}",
        out.stderr_text()
    );
    assert_eq!(t["restored"], tally(0, 0, 0));
    assert_eq!(doc["unresolved"][0]["path"], "gone");
    assert!(out.stderr_text().contains("could not restore 'gone'"));
    assert_eq!(doc["totals"]["failed"], 1);
}

/// saferm in instant mode, its staging left for unrm to find (no worker archives it).
fn stage(sb: &Sandbox, w: &Path, args: &[&str]) {
    let out = sb
        .command(saferm_bin())
        .args(args)
        .current_dir(w)
        .env("SAFERM_INSTANT", "1")
        .env("SAFERM_INSTANT_MIN", "0")
        .env("SAFERM_FAULT", "no-worker")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
}

#[test]
fn a_staged_deletion_restored_with_json_is_renamed_back_and_counted_where_it_is() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["t/x=12345", "t/y/z=67", "u/v=1"]);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("there"));
    let (t_ino, u_ino) = (inode(&w.join("t/x")), inode(&w.join("u/v")));
    // One command: a second saferm would archive the staging it finds (no worker has it).
    stage(&sb, &w, &["-r", "t", "u"]);
    assert!(!w.join("t").exists() && !w.join("u").exists());
    for (args, name, ino, counts) in [
        (&["t", "--json"][..], "t/x", t_ino, tally(4, 2, 7)),
        (&["--last", "--json"][..], "u/v", u_ino, tally(2, 1, 1)),
    ] {
        // No worker is started for what is left staged either.
        let out = sb
            .command(crate::common::unrm_bin())
            .args(args)
            .current_dir(&w)
            .env("SAFERM_FAULT", "no-worker")
            .run();
        assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
        let doc = document(&out, "restore");
        assert_eq!(doc["deletions"][0]["method"], "rename", "{doc:#}");
        let t = only_target(&doc);
        assert_eq!(t["state"], "restored", "{doc:#}");
        assert_eq!(t["restored"], counts, "{doc:#}");
        assert_eq!(inode(&w.join(name)), ino, "the same file, put back");
        assert!(out.stderr_text().is_empty(), "{}", out.stderr_text());
    }
    assert_eq!(fs::read(w.join("t/y/z")).expect("back"), b"67");
}

/// With a worker let run: whether it has archived the staging by the time unrm looks
/// (restored from the archive) or not (renamed back), the document counts the same.
#[test]
fn an_instant_mode_deletion_restored_with_json_comes_back_whole() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["t/x=12345", "t/y/z=67"]);
    let out = sb
        .command(saferm_bin())
        .args(["-r", "t"])
        .current_dir(&w)
        .env("SAFERM_INSTANT", "1")
        .env("SAFERM_INSTANT_MIN", "0")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(!w.join("t").exists());
    let doc = document(&unrm_ok(&sb, &w, &["--last", "--json"]), "restore");
    let t = only_target(&doc);
    assert_eq!(t["state"], "restored", "{doc:#}");
    assert_eq!(t["restored"], tally(4, 2, 7), "{doc:#}");
    assert_eq!(fs::read(w.join("t/x")).expect("back"), b"12345");
    assert_eq!(fs::read(w.join("t/y/z")).expect("back"), b"67");
}

#[test]
fn a_staged_deletion_that_could_not_be_archived_is_in_the_documents_as_the_schema_says() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["old=archived before", "t/f=staged"]);
    saferm_ok(&sb, &w, &["old"]);
    stage(&sb, &w, &["-r", "t"]);
    // The store looks full to unrm: the staging cannot be archived.
    let full = |args: &[&str]| {
        sb.command(crate::common::unrm_bin())
            .args(args)
            .current_dir(&w)
            .env("SAFERM_FAULT", "space")
            .run()
    };
    let list = document(&full(&["--list", "--json"]), "list");
    let row = &list["deletions"][0];
    assert_eq!(row["state"], "staged", "{list:#}");
    assert_eq!(row["staged"]["status"], "could_not_be_archived");
    assert_eq!(row["files"], Value::Null);
    assert_eq!(list["deletions"][1]["state"], "archived");
    let check = document(&full(&["--check", "--json"]), "check");
    assert_eq!(check["staged"][0]["failed"], true, "{check:#}");
}

#[test]
fn a_target_inside_another_is_counted_in_both_and_once_in_the_totals() {
    let sb = Sandbox::new();
    let w = store(&sb);
    let doc = document(&unrm_ok(&sb, &w, &["d", "d/a", "--json"]), "restore");
    let targets = doc["deletions"][0]["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{doc:#}");
    assert_eq!(targets[0]["restored"], tally(5, 2, 7), "{doc:#}");
    assert_eq!(targets[1]["destination"], path_of(&w.join("d/a")));
    assert_eq!(targets[1]["restored"], tally(1, 1, 5), "{doc:#}");
    assert_eq!(doc["totals"]["restored"], tally(5, 2, 7), "{doc:#}");
}
