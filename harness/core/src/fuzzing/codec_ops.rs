//! `_to_bytes_and_back` targets: `arbitrary` builds a message, the encoder writes it, and
//! the decoder must give the same message back.
//!
//! * `imap_command_to_bytes_and_back`: an imap-types `Command` (its `arbitrary` feature);
//!   the encoding must decode, and encoding what it decodes to must give the same bytes
//!   (the fixed-point rule of `imap_command_decode`: imap-codec normalises sequence sets).
//! * `pop3_command_to_bytes_and_back`: a [`crate::pop3::Command`] from the
//!   [`Arbitrary`] implementation here, which builds only commands this codec can
//!   write (a keyword's arguments have no spaces, a PASS no control characters, ...).
//! * `ntlm_message_to_bytes_and_back`: an NTLM NEGOTIATE, CHALLENGE or AUTHENTICATE
//!   message kept within what the format can carry (VERSION present exactly when its flag
//!   is set, a MIC exactly when the NTLMv2 response announces one, strings in the
//!   encoding the UNICODE flag selects).

use arbitrary::{Arbitrary, Unstructured};
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::Command as ImapCommand;
use imap_codec::CommandCodec;

use crate::ntlm::messages::{encode_av_pairs, AV_FLAG_MIC_PRESENT};
use crate::ntlm::{
    AuthenticateMessage, AvId, AvPair, ChallengeMessage, Message, NegotiateFlags, NegotiateMessage,
    Version,
};
use crate::pop3::{Command as Pop3Command, InitialResponse};

/// Fuzz target `imap_command_to_bytes_and_back`.
pub fn imap_command_to_bytes_and_back(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cmd) = ImapCommand::arbitrary(&mut u) else {
        return;
    };
    let codec = CommandCodec::default();
    let first = codec.encode(&cmd).dump();
    let decoded = codec.decode(&first);
    let Ok((rest, again)) = decoded else {
        panic!(
            "encoding of {cmd:?} does not decode: {:?} ({decoded:?})",
            String::from_utf8_lossy(&first)
        );
    };
    assert!(
        rest.is_empty(),
        "encoding left {} trailing octets",
        rest.len()
    );
    // Encoding is a function of the value: when the decoded command equals the one
    // encoded, re-encoding it gives `first` again and needs no second pass.
    if again == cmd {
        return;
    }
    let second = codec.encode(&again).dump();
    assert!(
        first == second,
        "encode(decode(encode(cmd))) differs for {cmd:?}: {:?} then {:?}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
}

/// Fuzz target `pop3_command_to_bytes_and_back`.
pub fn pop3_command_to_bytes_and_back(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cmd) = Pop3Command::arbitrary(&mut u) else {
        return;
    };
    let mut line = Vec::new();
    cmd.encode(&mut line);
    let body = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
        panic!("{cmd:?} encoded without CRLF");
    });
    assert!(!body.contains(&b'\n'), "{cmd:?} encoded on two lines");
    assert_eq!(
        Pop3Command::decode(body),
        Ok(cmd),
        "line {:?}",
        String::from_utf8_lossy(body)
    );
}

/// Fuzz target `ntlm_message_to_bytes_and_back`.
pub fn ntlm_message_to_bytes_and_back(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(msg) = arbitrary_ntlm_message(&mut u) else {
        return;
    };
    let bytes = msg.encode();
    assert_eq!(Message::decode(&bytes), Ok(msg), "bytes {bytes:02x?}");
}

// ---- POP3 ---------------------------------------------------------------------------------

const POP3_KEYWORDS: [&str; 15] = [
    "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE",
    "RSET", "NOOP", "QUIT",
];

/// Printable ASCII without space, 1 to 16 characters.
fn word(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = 1 + usize::from(u8::arbitrary(u)? % 16);
    (0..len)
        .map(|_| Ok(char::from(0x21 + u8::arbitrary(u)? % 94)))
        .collect()
}

/// Non-empty text without control characters: printable ASCII, spaces, some non-ASCII.
fn text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = 1 + usize::from(u8::arbitrary(u)? % 24);
    (0..len)
        .map(|_| {
            let b = u8::arbitrary(u)?;
            Ok(match b {
                0xf0..=0xf7 => {
                    ['é', 'ß', '€', '日', '\u{a0}', 'ÿ', 'Ω', '😀'][usize::from(b - 0xf0)]
                }
                _ => char::from(0x20 + b % 95),
            })
        })
        .collect()
}

fn number(u: &mut Unstructured<'_>) -> arbitrary::Result<u32> {
    Ok(u32::arbitrary(u)?.max(1))
}

impl<'a> Arbitrary<'a> for Pop3Command {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? % 16 {
            0 => Pop3Command::User(word(u)?),
            1 => Pop3Command::Pass(text(u)?),
            2 => {
                let user = word(u)?;
                let digest = (0..32)
                    .map(|_| {
                        Ok(char::from(
                            b"0123456789abcdefABCDEF"[usize::from(u8::arbitrary(u)? % 22)],
                        ))
                    })
                    .collect::<arbitrary::Result<String>>()?;
                Pop3Command::Apop { user, digest }
            }
            3 => {
                let mechanism = if bool::arbitrary(u)? {
                    Some(word(u)?)
                } else {
                    None
                };
                let initial = match (mechanism.is_some(), u8::arbitrary(u)? % 3) {
                    (true, 1) => Some(InitialResponse::Empty),
                    (true, 2) => {
                        let w = word(u)?;
                        Some(InitialResponse::Base64(if w == "=" {
                            "==".into()
                        } else {
                            w
                        }))
                    }
                    _ => None,
                };
                Pop3Command::Auth { mechanism, initial }
            }
            4 => Pop3Command::Capa,
            5 => Pop3Command::Stls,
            6 => Pop3Command::Stat,
            7 => Pop3Command::List(
                Option::<()>::arbitrary(u)?
                    .map(|()| number(u))
                    .transpose()?,
            ),
            8 => Pop3Command::Uidl(
                Option::<()>::arbitrary(u)?
                    .map(|()| number(u))
                    .transpose()?,
            ),
            9 => Pop3Command::Retr(number(u)?),
            10 => Pop3Command::Top(number(u)?, u32::arbitrary(u)?),
            11 => Pop3Command::Dele(number(u)?),
            12 => Pop3Command::Rset,
            13 => Pop3Command::Noop,
            14 => Pop3Command::Quit,
            _ => {
                let mut keyword = word(u)?;
                if POP3_KEYWORDS
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&keyword))
                {
                    keyword.insert(0, 'X');
                }
                if bool::arbitrary(u)? {
                    keyword.push(' ');
                    keyword.push_str(&text(u)?);
                }
                Pop3Command::Unknown(keyword)
            }
        })
    }
}

// ---- NTLM ---------------------------------------------------------------------------------

/// Latin-1 text (the OEM code page as the codec reads it), up to 20 characters.
fn latin1(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = usize::from(u8::arbitrary(u)? % 21);
    (0..len)
        .map(|_| Ok(char::from(u8::arbitrary(u)?)))
        .collect()
}

/// Any Unicode text, up to 20 characters.
fn unicode(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = usize::from(u8::arbitrary(u)? % 21);
    (0..len).map(|_| char::arbitrary(u)).collect()
}

fn bytes(u: &mut Unstructured<'_>, max: u8) -> arbitrary::Result<Vec<u8>> {
    let len = usize::from(u8::arbitrary(u)? % max.saturating_add(1).max(1));
    Ok(u.bytes(len.min(u.len()))?.to_vec())
}

fn version(u: &mut Unstructured<'_>) -> arbitrary::Result<Version> {
    Ok(Version {
        major: u8::arbitrary(u)?,
        minor: u8::arbitrary(u)?,
        build: u16::arbitrary(u)?,
        revision: u8::arbitrary(u)?,
    })
}

/// Flags, with VERSION set exactly when a version is present.
fn flags_and_version(
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<(NegotiateFlags, Option<Version>)> {
    let mut flags = NegotiateFlags(u32::arbitrary(u)?);
    let version = if bool::arbitrary(u)? {
        Some(version(u)?)
    } else {
        None
    };
    flags.set(NegotiateFlags::VERSION, version.is_some());
    Ok((flags, version))
}

fn av_pairs(u: &mut Unstructured<'_>, mic: bool) -> arbitrary::Result<Vec<AvPair>> {
    let n = usize::from(u8::arbitrary(u)? % 8);
    let mut pairs = Vec::with_capacity(n + 1);
    for _ in 0..n {
        let id = AvId(u16::arbitrary(u)?.max(1));
        pairs.push(match u8::arbitrary(u)? % 3 {
            0 => AvPair::string(id, &unicode(u)?),
            1 => AvPair::timestamp(u64::arbitrary(u)?),
            _ => AvPair {
                id,
                value: bytes(u, 64)?,
            },
        });
    }
    if mic {
        pairs.push(AvPair::flags(AV_FLAG_MIC_PRESENT));
    }
    Ok(pairs)
}

/// Builds a message the encoder can carry faithfully (see the module documentation).
pub fn arbitrary_ntlm_message(u: &mut Unstructured<'_>) -> arbitrary::Result<Message> {
    let (flags, version) = flags_and_version(u)?;
    Ok(match u8::arbitrary(u)? % 3 {
        0 => Message::Negotiate(NegotiateMessage {
            flags,
            domain: latin1(u)?,
            workstation: latin1(u)?,
            version,
        }),
        1 => {
            let text = if flags.contains(NegotiateFlags::UNICODE) {
                unicode(u)?
            } else {
                latin1(u)?
            };
            let target_info = if bool::arbitrary(u)? {
                Some(av_pairs(u, false)?)
            } else {
                None
            };
            Message::Challenge(ChallengeMessage {
                flags,
                target_name: text,
                server_challenge: <[u8; 8]>::arbitrary(u)?,
                target_info,
                version,
            })
        }
        _ => {
            let unicode_flag = flags.contains(NegotiateFlags::UNICODE);
            let mut s = || -> arbitrary::Result<String> {
                if unicode_flag {
                    unicode(u)
                } else {
                    latin1(u)
                }
            };
            let (domain, user, workstation) = (s()?, s()?, s()?);
            // Either raw octets or an NTLMv2 response whose AV pairs may announce a MIC.
            let nt_response = if bool::arbitrary(u)? {
                let mut nt = <[u8; 16]>::arbitrary(u)?.to_vec();
                nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
                nt.extend_from_slice(&u64::arbitrary(u)?.to_le_bytes());
                nt.extend_from_slice(&<[u8; 8]>::arbitrary(u)?);
                nt.extend_from_slice(&[0; 4]);
                let mic = bool::arbitrary(u)?;
                nt.extend_from_slice(&encode_av_pairs(&av_pairs(u, mic)?));
                nt
            } else {
                bytes(u, 48)?
            };
            let mut m = AuthenticateMessage {
                flags,
                lm_response: bytes(u, 24)?,
                nt_response,
                domain,
                user,
                workstation,
                encrypted_random_session_key: bytes(u, 16)?,
                version,
                mic: None,
            };
            let announces = matches!(m.ntlm_v2_response(), Some(Ok(r)) if r.mic_present());
            if announces {
                m.mic = Some(<[u8; 16]>::arbitrary(u)?);
            }
            Message::Authenticate(m)
        }
    })
}
