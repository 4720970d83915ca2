//! User and group names and homes, from the password and group databases.
//!
//! On Linux with glibc, saferm and unrm are linked statically (`.cargo/config.toml`: it
//! takes ~0.4 ms of dynamic loading off every call). A static glibc cannot load NSS
//! modules (`libnss_systemd`, `libnss_sss`, LDAP...): loading one brings a second libc into
//! the process, which then crashes. So those builds look in `/etc/passwd` and `/etc/group`
//! only (see `local_databases_only`), and ask `getent` (dynamically linked: it loads the
//! modules) about an id not found there. Every lookup goes through this module.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Whether this build is a static glibc one (see the module's doc).
const STATIC_GLIBC: bool = cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    target_feature = "crt-static"
));

/// A user: name and home directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
}

/// Make the static build's own NSS lookups use the files only (no module loaded, ever),
/// once, before its first lookup. Does nothing in other builds.
fn local_databases_only() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(configure_files_only);
}

fn configure_files_only() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
    {
        extern "C" {
            // glibc: overrides nsswitch.conf's line for one database.
            fn __nss_configure_lookup(
                db: *const libc::c_char,
                service_line: *const libc::c_char,
            ) -> libc::c_int;
        }
        for db in [c"passwd", c"group", c"initgroups"] {
            // SAFETY: both are NUL-terminated strings; glibc copies what it keeps. A
            // failure leaves nsswitch.conf's line, which only matters for ids that are
            // not in the files.
            unsafe {
                __nss_configure_lookup(db.as_ptr(), c"files".as_ptr());
            }
        }
    }
}

/// The user with this uid, if the password database has one.
pub fn user(uid: u32) -> Option<Account> {
    local_databases_only();
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        return Some(Account {
            name: u.name,
            home: u.dir,
        });
    }
    if !STATIC_GLIBC {
        return None;
    }
    parse_passwd(&getent("passwd", uid)?, uid)
}

/// The name of the group with this gid, if the group database has one.
pub fn group_name(gid: u32) -> Option<String> {
    local_databases_only();
    if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        return Some(g.name);
    }
    if !STATIC_GLIBC {
        return None;
    }
    parse_group(&getent("group", gid)?, gid)
}

/// `getent DB ID`'s line, if it printed one and succeeded.
fn getent(db: &str, id: u32) -> Option<String> {
    let output = Command::new(getent_program()?)
        .arg(db)
        .arg(id.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    text.lines().next().map(str::to_owned)
}

/// glibc's `getent`, by absolute path (never `$PATH`'s). Debug builds (the tests) take
/// `SAFERM_GETENT` instead, to stand in for a directory service.
fn getent_program() -> Option<PathBuf> {
    if cfg!(debug_assertions) {
        if let Some(p) = std::env::var_os("SAFERM_GETENT") {
            return Some(PathBuf::from(p));
        }
    }
    ["/usr/bin/getent", "/bin/getent"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `name:password:uid:gid:gecos:home:shell`, for this uid.
fn parse_passwd(line: &str, uid: u32) -> Option<Account> {
    let fields: Vec<&str> = line.split(':').collect();
    match fields[..] {
        [name, _, id, _, _, home, _] if !name.is_empty() && id.parse() == Ok(uid) => {
            Some(Account {
                name: name.to_owned(),
                home: PathBuf::from(home),
            })
        }
        _ => None,
    }
}

/// `name:password:gid:members`, for this gid.
fn parse_group(line: &str, gid: u32) -> Option<String> {
    let fields: Vec<&str> = line.split(':').collect();
    match fields[..] {
        [name, _, id, _] if !name.is_empty() && id.parse() == Ok(gid) => Some(name.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getent_lines_are_read_for_the_id_asked_about() {
        assert_eq!(
            parse_passwd("ann:x:5001:100:Ann:/home/ann:/bin/sh", 5001),
            Some(Account {
                name: "ann".into(),
                home: PathBuf::from("/home/ann"),
            })
        );
        assert_eq!(
            parse_passwd("ann:x:5001:100:Ann:/home/ann:/bin/sh", 5002),
            None
        );
        assert_eq!(parse_passwd("ann:x:5001:100", 5001), None);
        assert_eq!(parse_passwd(":x:5001:100::/:/bin/sh", 5001), None);
        assert_eq!(parse_group("staff:x:50:ann,bob", 50), Some("staff".into()));
        assert_eq!(parse_group("staff:x:50:ann,bob", 51), None);
        assert_eq!(parse_group("staff:x:fifty:", 50), None);
    }
}
