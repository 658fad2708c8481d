//! SEARCH evaluation (RFC 3501 6.4.4): whether one message matches a search key.

use std::collections::BTreeSet;

use imap_codec::imap_types::search::SearchKey;

use super::date::{search_day, sent_day};
use super::message;
use super::mime;
use super::view::{Ranges, ViewMsg};
use crate::world::StoredMessage;

/// What a key needs to know of the mailbox: the values of `*` (RFC 3501 9 `seq-number`).
pub(super) struct SearchCtx {
    /// The number of messages: `*` in a sequence set.
    pub exists: u32,
    /// The largest UID: `*` in a UID set.
    pub max_uid: u32,
}

fn has(flags: &BTreeSet<String>, f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

/// Case-insensitive substring on decoded (Unicode) text.
fn contains_text(hay: &str, needle: &[u8]) -> bool {
    hay.to_lowercase()
        .contains(&String::from_utf8_lossy(needle).to_lowercase())
}

/// Case-insensitive (ASCII) substring test in O(hay + needle) time (Knuth-Morris-Pratt),
/// so that a long SEARCH string against a large mailbox cannot hold the store lock for
/// hay x needle steps.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let lower = |b: u8| b.to_ascii_lowercase();
    // fail[i]: length of the longest proper border of needle[..=i].
    let mut fail = vec![0usize; needle.len()];
    let mut k = 0;
    for i in 1..needle.len() {
        let c = needle.get(i).copied().map(lower);
        while k > 0 && needle.get(k).copied().map(lower) != c {
            k = fail.get(k - 1).copied().unwrap_or(0);
        }
        if needle.get(k).copied().map(lower) == c {
            k += 1;
        }
        if let Some(f) = fail.get_mut(i) {
            *f = k;
        }
    }
    let mut k = 0;
    for &h in hay {
        let c = Some(lower(h));
        while k > 0 && needle.get(k).copied().map(lower) != c {
            k = fail.get(k - 1).copied().unwrap_or(0);
        }
        if needle.get(k).copied().map(lower) == c {
            k += 1;
            if k == needle.len() {
                return true;
            }
        }
    }
    false
}

fn header_contains(data: &[u8], field: &str, needle: &[u8]) -> bool {
    let (header, _) = message::split(data);
    message::fields(header)
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(field))
        .any(|f| contains_ci(&f.value, needle))
}

/// Whether an address in the message's `field` holds `needle` (RFC 3501 6.4.4: FROM, TO,
/// CC and BCC look in the envelope structure's field). Each address is looked at as
/// written without its comments and folding, `name <mailbox@host>`.
fn address_contains(data: &[u8], field: &str, needle: &[u8]) -> bool {
    let (header, _) = message::split(data);
    message::fields(header)
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(field))
        .flat_map(|f| message::parse_addresses(&f.value))
        .any(|a| contains_ci(&a.written(), needle))
}

/// Whether the message at sequence number `seq` matches `key` (RFC 3501 6.4.4).
pub(super) fn eval(
    key: &SearchKey<'_>,
    ctx: &SearchCtx,
    seq: u32,
    vm: &ViewMsg,
    msg: &StoredMessage,
) -> bool {
    let flags = &vm.flags;
    let data: &[u8] = &msg.data;
    let internal_day = msg.internal_date.div_euclid(86_400);
    let astr = |a: &imap_codec::imap_types::core::AString<'_>| a.as_ref().to_vec();
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| eval(k, ctx, seq, vm, msg)),
        SearchKey::Or(a, b) => eval(a, ctx, seq, vm, msg) || eval(b, ctx, seq, vm, msg),
        SearchKey::Not(k) => !eval(k, ctx, seq, vm, msg),
        SearchKey::SequenceSet(set) => Ranges::resolve(set, ctx.exists).contains(seq),
        SearchKey::Uid(set) => Ranges::resolve(set, ctx.max_uid).contains(vm.uid),
        SearchKey::All => true,
        SearchKey::Answered => has(flags, "\\Answered"),
        SearchKey::Deleted => has(flags, "\\Deleted"),
        SearchKey::Draft => has(flags, "\\Draft"),
        SearchKey::Flagged => has(flags, "\\Flagged"),
        SearchKey::Seen => has(flags, "\\Seen"),
        SearchKey::Unanswered => !has(flags, "\\Answered"),
        SearchKey::Undeleted => !has(flags, "\\Deleted"),
        SearchKey::Undraft => !has(flags, "\\Draft"),
        SearchKey::Unflagged => !has(flags, "\\Flagged"),
        SearchKey::Unseen => !has(flags, "\\Seen"),
        SearchKey::Recent => vm.recent,
        SearchKey::New => vm.recent && !has(flags, "\\Seen"),
        SearchKey::Old => !vm.recent,
        SearchKey::Keyword(k) => has(flags, k.as_ref()),
        SearchKey::Unkeyword(k) => !has(flags, k.as_ref()),
        SearchKey::Larger(n) => data.len() as u64 > u64::from(*n),
        SearchKey::Smaller(n) => (data.len() as u64) < u64::from(*n),
        SearchKey::Bcc(s) => address_contains(data, "Bcc", &astr(s)),
        SearchKey::Cc(s) => address_contains(data, "Cc", &astr(s)),
        SearchKey::From(s) => address_contains(data, "From", &astr(s)),
        SearchKey::To(s) => address_contains(data, "To", &astr(s)),
        SearchKey::Subject(s) => header_contains(data, "Subject", &astr(s)),
        SearchKey::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            header_contains(data, &name, &astr(value))
        }
        // Raw bytes first (cheap); the decoded text only when something is encoded.
        SearchKey::Body(s) => {
            let needle = astr(s);
            contains_ci(message::split(data).1, &needle)
                || mime::decoded_text(data, false).is_some_and(|t| contains_text(&t, &needle))
        }
        SearchKey::Text(s) => {
            let needle = astr(s);
            contains_ci(data, &needle)
                || mime::decoded_text(data, true).is_some_and(|t| contains_text(&t, &needle))
        }
        SearchKey::Before(d) => search_day(d).is_some_and(|d| internal_day < d),
        SearchKey::On(d) => search_day(d).is_some_and(|d| internal_day == d),
        SearchKey::Since(d) => search_day(d).is_some_and(|d| internal_day >= d),
        SearchKey::SentBefore(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s < d)
        }
        SearchKey::SentOn(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s == d)
        }
        SearchKey::SentSince(d) => {
            matches!((sent_day(data), search_day(d)), (Some(s), Some(d)) if s >= d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_search() {
        assert!(contains_ci(b"Hello World", b"o wOR"));
        assert!(contains_ci(b"aaab", b"AAB"));
        assert!(contains_ci(b"abababca", b"ababca"));
        assert!(!contains_ci(b"abababc", b"ababca"));
        assert!(contains_ci(b"", b""));
        assert!(!contains_ci(b"", b"a"));
        assert!(!contains_ci(b"ab", b"abc"));
        // Agrees with the naive definition on a few generated cases.
        let mut rng = crate::rng::SeededRng::new(3);
        for _ in 0..2000 {
            let hay: Vec<u8> = (0..rng.next_u64() % 20)
                .map(|_| b"abAB"[rng.next_u64() as usize % 4])
                .collect();
            let needle: Vec<u8> = (0..rng.next_u64() % 5)
                .map(|_| b"abAB"[rng.next_u64() as usize % 4])
                .collect();
            let naive = needle.is_empty()
                || hay
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(&needle));
            assert_eq!(contains_ci(&hay, &needle), naive, "{hay:?} {needle:?}");
        }
    }
}
