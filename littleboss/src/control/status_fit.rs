//! A status reply always fits in a control frame ([`MAX_CONTROL_FRAME`]), and so does a
//! history reply ([`fit_history`]: it leaves out the oldest events, and says how many).
//!
//! Its text fields are UTF-8, and the supervisor's paths and arguments are bytes: a byte
//! that is not UTF-8 shows as U+FFFD, which takes three bytes, so arguments that fit in
//! a reload request can make a status three times larger. The reply therefore cuts long
//! fields short, each ending in `… (N more bytes)`, and shares what is left between the
//! arguments; the supervisor itself keeps the exact bytes, and runs them. A reload with
//! so many arguments that status could not show each of them, even cut short, is
//! refused ([`check_reload`]).

use crate::control::history::History;
use crate::control::protocol::{self, MAX_CONTROL_FRAME, ReloadRequest, Response, Status};

/// The most any one field shows: a path, an argument, a listener's address.
const FIELD_CAP: usize = 4096;

/// `text`, cut as a field of `status` is (at [`FIELD_CAP`] bytes, ending in `… (N more
/// bytes)`): how the journal keeps a long reason.
pub(crate) fn cut_field(text: &str) -> String {
    cut(text, FIELD_CAP)
}

/// What the arguments may take of a reply, all together: the frame, less room for
/// the other fields (each at most [`FIELD_CAP`]) and the encoding's overhead.
const ARGS_BUDGET: usize = MAX_CONTROL_FRAME - 6 * FIELD_CAP;

/// Room kept within [`ARGS_BUDGET`], when a reload is checked, for the listener flags
/// (`--NAME=ADDRESS`) that the supervisor adds to the arguments.
const LISTENER_FLAGS: usize = 4096;

/// What one string costs in the reply besides its bytes (its length, a varint).
const OVERHEAD: usize = 3;

/// Cuts the fields of `status` so that its reply fits in a frame.
pub(crate) fn fit(mut status: Status) -> Status {
    for field in [
        status.child_path.as_mut(),
        status.previous_path.as_mut(),
        status.supervisor_path.as_mut(),
        status.child_started.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        *field = cut(field, FIELD_CAP);
    }
    status.name = cut(&status.name, FIELD_CAP);
    status.supervisor_started = cut(&status.supervisor_started, FIELD_CAP);
    status.state = cut(&status.state, FIELD_CAP);
    for value in status.listeners.values_mut() {
        *value = cut(value, FIELD_CAP);
    }
    status.child_args = fit_args(&status.child_args, ARGS_BUDGET);
    status
}

/// `history` less its oldest events, as few as needed for its reply at `version` to fit
/// in a frame; they are counted in its `omitted`.
pub(crate) fn fit_history(mut history: History, version: u16) -> History {
    let size =
        |h: &History| protocol::encode_response(version, &Response::History(h.clone())).len();
    let mut len = size(&history);
    while len > MAX_CONTROL_FRAME && !history.events.is_empty() {
        // About as many as the excess takes, at least one.
        let each = len / history.events.len();
        let drop = ((len - MAX_CONTROL_FRAME) / each.max(1) + 1).min(history.events.len());
        history.events.drain(..drop);
        history.omitted += drop as u64;
        len = size(&history);
    }
    history
}

/// Refuses a reload whose arguments status could not show, even each cut short.
pub(crate) fn check_reload(request: &ReloadRequest) -> Result<(), TooManyArgs> {
    let Some(args) = &request.args else {
        return Ok(());
    };
    let shown: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let budget = ARGS_BUDGET - LISTENER_FLAGS;
    let least = total(&shown, 0);
    if least > budget {
        return Err(TooManyArgs {
            count: shown.len(),
            least,
            budget,
        });
    }
    Ok(())
}

/// A reload refused by [`check_reload`]: its `count` arguments would take `least`
/// bytes of a status reply even cut short, more than the `budget` they have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused: {count} arguments are more than status can show (even cut short they take {least} bytes of a reply; at most {budget}); pass fewer arguments"
)]
pub(crate) struct TooManyArgs {
    pub count: usize,
    pub least: usize,
    pub budget: usize,
}

/// The arguments within `budget` bytes: all of them whole if they fit, else each cut at
/// the largest length that makes them fit. If even that fails (too many arguments,
/// which [`check_reload`] refuses), the first ones cut short, and one last entry that
/// says how many more there are.
fn fit_args(args: &[String], budget: usize) -> Vec<String> {
    let capped: Vec<String> = args.iter().map(|a| cut(a, FIELD_CAP)).collect();
    if total(&capped, FIELD_CAP) <= budget {
        return capped;
    }
    if total(&capped, 0) <= budget {
        // The largest cap that fits, by bisection (cost is nearly monotone in it).
        let (mut fits, mut over) = (0, FIELD_CAP);
        while over - fits > 1 {
            let mid = (fits + over) / 2;
            if total(&capped, mid) <= budget {
                fits = mid;
            } else {
                over = mid;
            }
        }
        return capped.iter().map(|a| cut(a, fits)).collect();
    }
    let mut shown = Vec::new();
    let mut used = 0;
    let reserve = 64;
    for (i, arg) in capped.iter().enumerate() {
        let one = cut(arg, 0);
        if used + one.len() + OVERHEAD + reserve > budget {
            shown.push(format!("… ({} more arguments)", capped.len() - i));
            break;
        }
        used += one.len() + OVERHEAD;
        shown.push(one);
    }
    shown
}

/// What `args` take of a reply when each is cut at `cap` bytes.
fn total(args: &[String], cap: usize) -> usize {
    args.iter().map(|a| shown_len(a, cap) + OVERHEAD).sum()
}

fn shown_len(s: &str, cap: usize) -> usize {
    if s.len() <= cap {
        return s.len();
    }
    let kept = floor_char_boundary(s, cap);
    (kept + marker(s.len() - kept).len()).min(s.len())
}

/// `s` itself if it is at most `cap` bytes (or cutting it would not make it shorter),
/// else its first bytes up to `cap` (whole characters) and `… (N more bytes)`.
fn cut(s: &str, cap: usize) -> String {
    if shown_len(s, cap) >= s.len() {
        return s.to_string();
    }
    let kept = floor_char_boundary(s, cap);
    format!("{}{}", &s[..kept], marker(s.len() - kept))
}

fn marker(more: usize) -> String {
    format!("… ({more} more bytes)")
}

/// The largest index at most `at` that starts a character of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{self, PROTOCOL, Response};

    fn status(args: Vec<String>) -> Status {
        Status {
            name: "svc".into(),
            protocol: PROTOCOL,
            protocols: [1, PROTOCOL],
            supervisor_pid: 1,
            supervisor_started: "2025-01-01T00:00:00.000Z".into(),
            supervisor_path: Some("/bin/svc".into()),
            upgrades: 0,
            lameduck_ms: 0,
            hello_timeout_ms: 0,
            child_pid: Some(2),
            child_path: Some("/bin/svc".into()),
            child_args: args,
            child_started: None,
            previous_path: None,
            reloads: 0,
            failures: 0,
            restarts: 0,
            state: "running".into(),
            listeners: Default::default(),
            standby_pid: None,
            probation_ends: None,
            // The most it can take, so that the reply still fits with it.
            last_reload_state_bytes: Some(u64::MAX),
        }
    }

    fn encoded_len(status: Status) -> usize {
        protocol::encode(&Response::Status(Box::new(status))).len()
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn short_fields_are_untouched() {
        let args = vec!["svc".to_string(), "--verbose".to_string()];
        assert_eq!(fit(status(args.clone())).child_args, args);
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(
            cut("abcdefghijklmnopqrstuvwxyz0123456789", 4),
            "abcd… (32 more bytes)"
        );
        // A cut never splits a character.
        assert_eq!(cut(&"é".repeat(40), 3), format!("é… ({} more bytes)", 78));
    }

    /// The finding: 20 arguments of 1,500 bytes of 0xFF (90 KiB once shown) fit.
    #[test]
    fn invalid_utf8_arguments_fit_in_a_frame() {
        let arg = lossy(&[0xFF; 1500]);
        let fitted = fit(status(vec![arg; 20]));
        assert_eq!(fitted.child_args.len(), 20);
        assert!(fitted.child_args.iter().all(|a| a.starts_with('\u{FFFD}')));
        assert!(
            fitted.child_args[0].ends_with(" more bytes)"),
            "{}",
            fitted.child_args[0]
        );
        assert!(encoded_len(fitted) <= MAX_CONTROL_FRAME);
        let request = ReloadRequest {
            path: b"/bin/svc".to_vec(),
            args: Some(vec![vec![0xFF; 1500]; 20]),
            listeners: Vec::new(),
        };
        assert_eq!(check_reload(&request), Ok(()));
    }

    #[test]
    fn ascii_arguments_near_the_frame_size_fit() {
        for (count, len) in [(1, 65_000), (16, 4000), (64, 1000), (650, 100)] {
            let fitted = fit(status(vec!["x".repeat(len); count]));
            assert_eq!(fitted.child_args.len(), count, "{count} x {len}");
            assert!(encoded_len(fitted) <= MAX_CONTROL_FRAME, "{count} x {len}");
        }
    }

    /// More arguments than status can show, even cut short: the reload is refused, and
    /// a status that has them anyway (it cannot, but the reply must not fail) fits.
    #[test]
    fn too_many_arguments_are_refused_and_still_fit() {
        let request = ReloadRequest {
            path: b"/bin/svc".to_vec(),
            args: Some(vec![vec![0xFF; 30]; 2000]),
            listeners: Vec::new(),
        };
        let refused = check_reload(&request).unwrap_err();
        assert_eq!(refused.count, 2000);
        assert_eq!(
            refused.to_string(),
            format!(
                "refused: 2000 arguments are more than status can show (even cut short they take {} bytes of a reply; at most {}); pass fewer arguments",
                refused.least, refused.budget
            )
        );
        let fitted = fit(status(vec![lossy(&[0xFF; 30]); 20_000]));
        assert!(encoded_len(fitted.clone()) <= MAX_CONTROL_FRAME);
        let last = fitted.child_args.last().unwrap();
        assert!(last.ends_with(" more arguments)"), "{last}");
        // Many short arguments are shown whole.
        let request = ReloadRequest {
            path: b"/bin/svc".to_vec(),
            args: Some(vec![b"-v".to_vec(); 5000]),
            listeners: Vec::new(),
        };
        assert_eq!(check_reload(&request), Ok(()));
    }

    #[test]
    fn long_paths_and_addresses_are_cut() {
        let mut s = status(Vec::new());
        s.child_path = Some(lossy(&[0xFF; 30_000]));
        s.previous_path = Some("p".repeat(70_000));
        s.listeners
            .insert("sock".into(), format!("unix:{}", "a".repeat(9000)));
        let fitted = fit(s);
        assert!(
            fitted
                .child_path
                .as_ref()
                .unwrap()
                .ends_with(" more bytes)")
        );
        assert!(encoded_len(fitted) <= MAX_CONTROL_FRAME);
    }

    #[test]
    fn a_history_too_long_for_a_frame_leaves_out_its_oldest_events() {
        let long = "x".repeat(3000);
        let events: Vec<_> = (0..256)
            .map(|seq| crate::control::history::Event {
                reason: Some(long.clone()),
                ..crate::control::history::sample_reload(seq)
            })
            .collect();
        let fitted = fit_history(History { omitted: 0, events }, PROTOCOL);
        let reply = protocol::encode_response(PROTOCOL, &Response::History(fitted.clone()));
        assert!(reply.len() <= MAX_CONTROL_FRAME, "{}", reply.len());
        assert_eq!(fitted.omitted + fitted.events.len() as u64, 256);
        assert!(fitted.omitted > 200, "{}", fitted.omitted);
        assert_eq!(fitted.events.last().map(|e| e.seq), Some(255));
        let omitted = format!("({} older events omitted)\n", fitted.omitted);
        assert!(fitted.lines().starts_with(&omitted));
        // A short one is whole.
        let short = History {
            omitted: 0,
            events: vec![crate::control::history::sample_reload(1)],
        };
        assert_eq!(fit_history(short.clone(), PROTOCOL), short);
    }
}
