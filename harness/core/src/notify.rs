//! Mail events across protocols: a message stored over IMAP is news to every MAPI session
//! registered for that mailbox. Endpoints publish what they store; subscribers (the
//! EMSMDB notification machinery) take the events queued for them, and the adapter that
//! drives a subscriber's session is woken through a [`Waker`] it supplied.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How a sans-IO session asks its adapter to run it again (the lab backs it with a
/// tokio `Notify`; the adapter then calls `ServerSession::handle_wake`).
pub trait Waker: Send + Sync + std::fmt::Debug {
    fn wake(&self);
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailEventKind {
    /// A message was stored (IMAP APPEND or COPY, delivery).
    NewMail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEvent {
    pub kind: MailEventKind,
    /// The account (matched case-insensitively, as the directory matches names).
    pub user: String,
    /// The mailbox name as the store keys it (`INBOX`).
    pub mailbox: String,
    pub uid: u32,
}

/// Events queued per subscription beyond which the oldest are dropped (and the
/// subscription marked as having overflowed): a subscriber that never takes its events
/// must not make the lab hold an unbounded queue.
pub const MAX_QUEUED: usize = 256;

/// Subscriptions held at once by the whole lab.
pub const MAX_SUBSCRIPTIONS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

struct Subscription {
    user: String,
    /// None: every mailbox of the user.
    mailbox: Option<String>,
    waker: Arc<dyn Waker>,
    queue: VecDeque<MailEvent>,
    overflowed: bool,
}

#[derive(Default)]
struct Inner {
    last_id: u64,
    subscriptions: HashMap<u64, Subscription>,
}

/// The lab's notification hub. A cloned world gets a hub of its own with no subscribers.
#[derive(Default)]
pub struct NotificationHub {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for NotificationHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationHub")
            .field("subscriptions", &self.lock().subscriptions.len())
            .finish()
    }
}

impl Clone for NotificationHub {
    fn clone(&self) -> Self {
        NotificationHub::default()
    }
}

/// The subscription limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many notification subscriptions (limit {MAX_SUBSCRIPTIONS})")]
pub struct TooManySubscriptions;

impl NotificationHub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent between statements; a panicking holder is a bug
        // elsewhere that must not stop every other session's notifications.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events for `user` (any case) in `mailbox` (None: all its mailboxes) will be
    /// queued for this subscription, and `waker` woken for each.
    pub fn subscribe(
        &self,
        user: &str,
        mailbox: Option<&str>,
        waker: Arc<dyn Waker>,
    ) -> Result<SubscriptionId, TooManySubscriptions> {
        let mut inner = self.lock();
        if inner.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(TooManySubscriptions);
        }
        inner.last_id += 1;
        let id = inner.last_id;
        inner.subscriptions.insert(
            id,
            Subscription {
                user: user.to_ascii_lowercase(),
                mailbox: mailbox.map(crate::world::Account::mailbox_key),
                waker,
                queue: VecDeque::new(),
                overflowed: false,
            },
        );
        Ok(SubscriptionId(id))
    }

    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.lock().subscriptions.remove(&id.0);
    }

    /// Queues `event` for every matching subscription and wakes their sessions (after
    /// the lock is released: a waker may run the session on this thread).
    pub fn publish(&self, event: MailEvent) {
        let mut to_wake = Vec::new();
        {
            let mut inner = self.lock();
            for sub in inner.subscriptions.values_mut() {
                let mailbox_matches = sub.mailbox.as_deref().is_none_or(|m| m == event.mailbox);
                if !sub.user.eq_ignore_ascii_case(&event.user) || !mailbox_matches {
                    continue;
                }
                if sub.queue.len() >= MAX_QUEUED {
                    sub.queue.pop_front();
                    sub.overflowed = true;
                }
                sub.queue.push_back(event.clone());
                to_wake.push(Arc::clone(&sub.waker));
            }
        }
        to_wake.iter().for_each(|w| w.wake());
    }

    /// Takes the events queued for `id`, and whether some were dropped since the last
    /// take. An unknown id has none.
    pub fn take(&self, id: SubscriptionId) -> (Vec<MailEvent>, bool) {
        let mut inner = self.lock();
        match inner.subscriptions.get_mut(&id.0) {
            Some(sub) => (
                sub.queue.drain(..).collect(),
                std::mem::take(&mut sub.overflowed),
            ),
            None => (Vec::new(), false),
        }
    }

    pub fn has_pending(&self, id: SubscriptionId) -> bool {
        self.lock()
            .subscriptions
            .get(&id.0)
            .is_some_and(|s| !s.queue.is_empty())
    }

    pub fn subscriptions(&self) -> usize {
        self.lock().subscriptions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default, Debug)]
    struct Count(AtomicUsize);

    impl Waker for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn new_mail(user: &str, mailbox: &str, uid: u32) -> MailEvent {
        MailEvent {
            kind: MailEventKind::NewMail,
            user: user.into(),
            mailbox: mailbox.into(),
            uid,
        }
    }

    #[test]
    fn events_reach_matching_subscriptions_and_wake_them() {
        let hub = NotificationHub::default();
        let (inbox, any, other) = (
            Arc::new(Count::default()),
            Arc::new(Count::default()),
            Arc::new(Count::default()),
        );
        let a = hub
            .subscribe("Alice", Some("inbox"), inbox.clone())
            .unwrap();
        let b = hub.subscribe("alice", None, any.clone()).unwrap();
        let c = hub.subscribe("bob", None, other.clone()).unwrap();
        hub.publish(new_mail("alice", "INBOX", 7));
        hub.publish(new_mail("alice", "Sent", 8));
        assert_eq!(inbox.0.load(Ordering::Relaxed), 1);
        assert_eq!(any.0.load(Ordering::Relaxed), 2);
        assert_eq!(other.0.load(Ordering::Relaxed), 0);
        assert!(hub.has_pending(a) && !hub.has_pending(c));
        assert_eq!(hub.take(a), (vec![new_mail("alice", "INBOX", 7)], false));
        assert!(!hub.has_pending(a));
        assert_eq!(hub.take(b).0.len(), 2);
        hub.unsubscribe(a);
        hub.publish(new_mail("alice", "INBOX", 9));
        assert_eq!(
            inbox.0.load(Ordering::Relaxed),
            1,
            "no wake after unsubscribe"
        );
        assert_eq!(hub.take(a), (vec![], false));
        assert_eq!(hub.subscriptions(), 2);
    }

    #[test]
    fn a_subscriber_that_never_takes_holds_a_bounded_queue() {
        let hub = NotificationHub::default();
        let id = hub
            .subscribe("alice", None, Arc::new(Count::default()))
            .unwrap();
        for uid in 0..(MAX_QUEUED as u32 + 10) {
            hub.publish(new_mail("alice", "INBOX", uid));
        }
        let (events, overflowed) = hub.take(id);
        assert_eq!(events.len(), MAX_QUEUED);
        assert_eq!(events[0].uid, 10, "the oldest went first");
        assert!(overflowed);
        assert_eq!(hub.take(id), (vec![], false));
    }

    #[test]
    fn a_cloned_hub_has_no_subscribers() {
        let hub = NotificationHub::default();
        hub.subscribe("alice", None, Arc::new(Count::default()))
            .unwrap();
        assert_eq!(hub.clone().subscriptions(), 0);
    }
}
