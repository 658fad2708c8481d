//! Fuzz target for the server side of the SASL mechanisms (PLAIN, LOGIN, NTLM).

/// SASL exchanges: arbitrary client responses into a server-side exchange of each
/// mechanism. Invariant: PLAIN and LOGIN succeed only when the user's password is in the
/// input; NTLM never succeeds on fuzzed bytes.
pub fn sasl_exchange(data: &[u8]) {
    use crate::sasl::{Mechanism, SaslServer, SaslStep};
    let Some(world) = super::ops::default_world() else {
        return;
    };
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mechanism = match first % 3 {
        0 => Mechanism::Plain,
        1 => Mechanism::Login,
        _ => Mechanism::Ntlm,
    };
    let mut rng = crate::rng::SeededRng::new(u64::from(first));
    let mut responses = rest.split(|&b| b == 0xff);
    let initial = if first & 0x80 != 0 {
        responses.next()
    } else {
        None
    };
    let (mut server, mut step) = SaslServer::start(mechanism, &world, &mut rng, 0, initial);
    for _ in 0..8 {
        match step {
            SaslStep::Challenge(_) => match responses.next() {
                Some(r) => step = server.step(&world, r),
                None => return,
            },
            SaslStep::Success { ref user } => {
                let password = world.directory.password(user).unwrap_or_default();
                // An NTLM AUTHENTICATE answering a fresh challenge needs the password's hash:
                // fuzzed bytes never make one.
                assert!(
                    mechanism != Mechanism::Ntlm,
                    "NTLM accepted fuzzed bytes for {user}"
                );
                {
                    assert!(
                        data.windows(password.len().max(1))
                            .any(|w| w == password.as_bytes()),
                        "{mechanism} succeeded for {user} without the password in the input"
                    );
                }
                return;
            }
            SaslStep::Failure(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sasl_target_reaches_what_it_checks() {
        // SASL that succeeds or not.
        sasl_exchange(b"\x80\x00alice\x00secret");
        sasl_exchange(b"\x01alice\xffsecret");
        sasl_exchange(b"\x80\x00alice\x00wrong");
    }
}
