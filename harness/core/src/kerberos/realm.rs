//! The realm's database: every principal the KDC knows, with its keys and policy. Built
//! from the world, so Kerberos users are IMAP's, POP3's and NTLM's users with the same
//! passwords. Service keys come from fixed passwords (`k-<name>`, krbtgt from
//! `krbtgt-<REALM>`), as scripts/peers/krb5/start.sh makes them for MIT's KDC: the two KDCs
//! are then one realm, and a ticket from one is good at the other.

use std::collections::BTreeMap;

use super::keys::{default_salt, Etype, Key};
use super::{Name, NT_PRINCIPAL, NT_SRV_HST};
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A user (a client principal that can also be a target, as MIT allows).
    User,
    /// A service: the web tier, the store, a global catalog.
    Service,
    /// The ticket-granting service `krbtgt/REALM`.
    Tgs,
}

#[derive(Debug, Clone)]
pub struct RealmEntry {
    pub name: Name,
    pub kind: EntryKind,
    /// Strongest first (`Etype::ALL`'s order).
    pub keys: Vec<Key>,
    /// The key version number sealed tickets carry (MIT's first key is 1).
    pub kvno: u32,
    pub salt: String,
    /// Tickets for this service get the ok-as-delegate flag (RFC 4120 2.8): a client with
    /// `--delegation policy` forwards its TGT only to such services.
    pub ok_as_delegate: bool,
    /// An AS-REQ without PA-ENC-TIMESTAMP is answered KDC_ERR_PREAUTH_REQUIRED.
    pub requires_preauth: bool,
}

impl RealmEntry {
    pub fn key(&self, etype: Etype) -> Option<&Key> {
        self.keys.iter().find(|k| k.etype == etype)
    }

    /// The key a ticket for this principal is sealed with: its strongest.
    pub fn ticket_key(&self) -> Option<&Key> {
        self.keys.first()
    }
}

/// A service principal of the lab's hosts, as `RealmDb::for_world` makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub ok_as_delegate: bool,
}

#[derive(Debug, Clone)]
pub struct RealmDb {
    realm: String,
    entries: BTreeMap<String, RealmEntry>,
}

impl RealmDb {
    pub fn new(realm: &str) -> RealmDb {
        let mut db = RealmDb {
            realm: realm.to_string(),
            entries: BTreeMap::new(),
        };
        let tgs = Name::tgs(realm);
        db.insert(
            tgs,
            EntryKind::Tgs,
            &format!("krbtgt-{realm}"),
            false,
            false,
        );
        db
    }

    /// The world's realm: its DNS domain in capitals (`EXAMPLE.TEST`), its users, and the
    /// service principals of `default_services`.
    pub fn for_world(world: &World) -> RealmDb {
        let realm = realm_of(world);
        let mut db = RealmDb::new(&realm);
        for user in world.directory.principals() {
            db.add_user(&user.name, &user.password);
        }
        for service in default_services(world) {
            db.add_service(&service.name, service.ok_as_delegate);
        }
        db
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn add_user(&mut self, name: &str, password: &str) {
        self.insert(Name::user(name), EntryKind::User, password, false, true);
    }

    /// Adds (or replaces) a service principal `service/host` with its fixed-password key.
    pub fn add_service(&mut self, name: &str, ok_as_delegate: bool) {
        let password = format!("k-{name}");
        self.insert(
            Name::parse(name, NT_SRV_HST),
            EntryKind::Service,
            &password,
            ok_as_delegate,
            false,
        );
    }

    /// Removes a principal (a global catalog's entry while the directory moves); the KDC
    /// then answers KDC_ERR_S_PRINCIPAL_UNKNOWN for it.
    pub fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    pub fn lookup(&self, name: &Name) -> Option<&RealmEntry> {
        self.entries.get(&name.text())
    }

    pub fn entry(&self, name: &str) -> Option<&RealmEntry> {
        self.entries.get(name)
    }

    pub fn tgs(&self) -> Option<&RealmEntry> {
        self.lookup(&Name::tgs(&self.realm))
    }

    pub fn entries(&self) -> impl Iterator<Item = &RealmEntry> {
        self.entries.values()
    }

    fn insert(
        &mut self,
        name: Name,
        kind: EntryKind,
        password: &str,
        ok_as_delegate: bool,
        requires_preauth: bool,
    ) {
        let salt = default_salt(&self.realm, &name.components);
        let keys = Etype::ALL
            .iter()
            .map(|e| Key::from_password(*e, password, &salt))
            .collect();
        let name = if kind == EntryKind::User {
            Name {
                kind: NT_PRINCIPAL,
                ..name
            }
        } else {
            name
        };
        self.entries.insert(
            name.text(),
            RealmEntry {
                name,
                kind,
                keys,
                kvno: 1,
                salt,
                ok_as_delegate,
                requires_preauth,
            },
        );
    }
}

/// `EXAMPLE.TEST` for the DNS domain `example.test`.
pub fn realm_of(world: &World) -> String {
    world.dns_domain.to_ascii_uppercase()
}

/// The lab's service principals: the web tier on its own host (`web.`, ok-as-delegate, the
/// double hop's first tier) and a second web host without the flag (`plain.`); the
/// Exchange host's store, address book, referral and web services; two global catalogs.
pub fn default_services(world: &World) -> Vec<ServiceSpec> {
    let dns = &world.dns_domain;
    let mail = &world.hostname;
    let spec = |name: String, ok_as_delegate: bool| ServiceSpec {
        name,
        ok_as_delegate,
    };
    vec![
        spec(format!("HTTP/web.{dns}"), true),
        spec(format!("HTTP/plain.{dns}"), false),
        spec(format!("HTTP/{mail}"), false),
        spec(format!("exchangeMDB/{mail}"), false),
        spec(format!("exchangeRFR/{mail}"), false),
        spec(format!("exchangeAB/gc1.{dns}"), false),
        spec(format!("exchangeAB/gc2.{dns}"), false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabFile;

    #[test]
    fn the_world_realm_has_its_users_services_and_tgs() {
        let world = LabFile::default_lab().build().expect("default lab");
        let db = RealmDb::for_world(&world);
        assert_eq!(db.realm(), "EXAMPLE.TEST");
        let names: Vec<String> = db.entries().map(|e| e.name.text()).collect();
        assert_eq!(
            names,
            [
                "HTTP/mail.example.test",
                "HTTP/plain.example.test",
                "HTTP/web.example.test",
                "alice",
                "bob",
                "exchangeAB/gc1.example.test",
                "exchangeAB/gc2.example.test",
                "exchangeMDB/mail.example.test",
                "exchangeRFR/mail.example.test",
                "krbtgt/EXAMPLE.TEST",
                "user",
            ]
        );
        let alice = db.entry("alice").expect("alice");
        assert!(alice.requires_preauth);
        assert_eq!(alice.salt, "EXAMPLE.TESTalice");
        assert_eq!(
            alice.key(Etype::Aes256),
            Some(&Key::from_password(
                Etype::Aes256,
                "secret",
                "EXAMPLE.TESTalice"
            ))
        );
        let web = db.entry("HTTP/web.example.test").expect("web");
        assert!(web.ok_as_delegate && !web.requires_preauth);
        assert_eq!(
            web.ticket_key(),
            Some(&Key::from_password(
                Etype::Aes256,
                "k-HTTP/web.example.test",
                "EXAMPLE.TESTHTTPweb.example.test"
            ))
        );
        assert!(
            !db.entry("HTTP/plain.example.test")
                .expect("plain")
                .ok_as_delegate
        );
        let tgs = db.tgs().expect("tgs");
        assert_eq!(tgs.kind, EntryKind::Tgs);
        assert_eq!(tgs.salt, "EXAMPLE.TESTkrbtgtEXAMPLE.TEST");
    }

    #[test]
    fn services_can_leave_and_come_back() {
        let mut db = RealmDb::new("R.TEST");
        db.add_service("exchangeAB/gc2.r.test", false);
        assert!(db.remove("exchangeAB/gc2.r.test"));
        assert!(!db.remove("exchangeAB/gc2.r.test"));
        assert!(db.entry("exchangeAB/gc2.r.test").is_none());
        db.add_service("exchangeAB/gc2.r.test", false);
        assert!(db.entry("exchangeAB/gc2.r.test").is_some());
    }
}
