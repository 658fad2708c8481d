//! Exchange legacy distinguished names (the `legacyExchangeDN` of a recipient), shared by
//! the interfaces that name a mailbox owner by DN (EMSMDB EcDoConnectEx's szUserDN,
//! RopLogon's Essdn; NSPI answers with the same form).

/// The administrative group every lab object lives in (the fixed name Exchange 2007 and
/// later give their one group).
pub const ADMIN_GROUP: &str = "Exchange Administrative Group (FYDIBOHF23SPDLT)";

/// `/o=<org>/ou=<admin group>`: the prefix EcDoConnectEx hands out as szDNPrefix.
pub fn org_prefix(org: &str) -> String {
    format!("/o={org}/ou={ADMIN_GROUP}")
}

/// `/o=<org>/ou=<admin group>/cn=Recipients/cn=<user>`.
pub fn user_dn(org: &str, user: &str) -> String {
    format!("{}/cn=Recipients/cn={user}", org_prefix(org))
}

/// The user a recipient DN of `org` names (compared case-insensitively, as Exchange
/// compares DNs), or None when the DN is not of that form.
pub fn user_of_dn<'a>(org: &str, dn: &'a str) -> Option<&'a str> {
    let prefix = format!("{}/cn=Recipients/cn=", org_prefix(org));
    let head = dn.get(..prefix.len())?;
    let user = &dn[prefix.len()..];
    (head.eq_ignore_ascii_case(&prefix) && !user.is_empty() && !user.contains('/')).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_dns_round_trip_and_other_forms_are_refused() {
        let dn = user_dn("EXAMPLE", "alice");
        assert_eq!(
            dn,
            "/o=EXAMPLE/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=alice"
        );
        assert_eq!(user_of_dn("EXAMPLE", &dn), Some("alice"));
        assert_eq!(user_of_dn("example", &dn.to_uppercase()), Some("ALICE"));
        assert_eq!(user_of_dn("OTHER", &dn), None);
        assert_eq!(user_of_dn("EXAMPLE", &format!("{dn}/cn=x")), None);
        assert_eq!(user_of_dn("EXAMPLE", "/o=EXAMPLE"), None);
        assert_eq!(user_of_dn("EXAMPLE", "/o=EXAMPLE/ou=é"), None);
    }
}
