//! User and group names and homes, from the system's password and group databases.
//!
//! Every lookup goes through this module: `getpwuid_r`/`getgrgid_r` (nix), so nsswitch.conf
//! is honoured and directory-service users (LDAP, SSSD, systemd) have their names, with no
//! process started per call. A lookup can cost a round trip to a directory server: callers
//! that look up many ids keep one answer per id (`remove.rs`'s `Names`).

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

/// A user: name and home directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
}

/// The user with this uid, if the password database has one. An error from the database
/// counts as not found: the id is then used by number, as GNU tar does.
pub fn user(uid: u32) -> Option<Account> {
    let u = User::from_uid(Uid::from_raw(uid)).ok()??;
    Some(Account {
        name: u.name,
        home: u.dir,
    })
}

/// The name of the group with this gid, if the group database has one.
pub fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_and_an_unused_id_is_not() {
        assert_eq!(user(0).map(|u| u.name).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        // The highest id but one (u32::MAX is "no id" to chown): no database hands it out.
        assert_eq!(user(u32::MAX - 1), None);
        assert_eq!(group_name(u32::MAX - 1), None);
    }
}
