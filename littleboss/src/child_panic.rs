//! A supervised program's panic, told to its supervisor. A `main` that panics ends the
//! child (exit code 101, as any Rust program), and the supervisor quotes where and why
//! in the reason that a failed `reload`, `start` or `upgrade` prints, as it quotes an
//! `Err` from `main`: the one who asked sees it, not only whoever reads the
//! supervisor's log.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::child::Link;
use crate::control::protocol::{PANICKED, capped};

/// What the panic hook saw last on the thread that runs `main`: where and what.
static SEEN: Mutex<Option<String>> = Mutex::new(None);

/// Runs `main`; if it panics, tells the supervisor where and why over `link` (as a
/// [`Finished`](crate::control::protocol::ChildMsg::Finished) error that starts with
/// [`PANICKED`]) before the panic goes on and ends the process.
///
/// Only a panic that ends `main` is told: one that a task or a thread of the program
/// catches (tokio catches a spawned task's) is the program's business. The panic hook
/// that was set before still runs, so the message is printed to stderr as ever. With
/// `panic = "abort"` nothing unwinds to catch, so the hook tells the supervisor itself.
pub(crate) fn run(
    link: &Arc<Link>,
    main: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let main_thread = thread::current().id();
    let abort_link = cfg!(panic = "abort").then(|| Arc::clone(link));
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if thread::current().id() == main_thread {
            let text = described(info);
            match &abort_link {
                Some(link) => link.finished(&Err(text)),
                None => {
                    if let Ok(mut seen) = SEEN.lock() {
                        *seen = Some(text);
                    }
                }
            }
        }
        previous(info);
    }));
    match panic::catch_unwind(AssertUnwindSafe(main)) {
        Ok(result) => result,
        Err(payload) => {
            let seen = SEEN.lock().ok().and_then(|mut seen| seen.take());
            let text = seen.unwrap_or_else(|| {
                capped(format!(
                    "{PANICKED}an unknown place: {}",
                    payload_text(&*payload)
                ))
            });
            link.finished(&Err(text));
            panic::resume_unwind(payload)
        }
    }
}

/// `panicked at src/main.rs:4:5: boom`.
fn described(info: &PanicHookInfo<'_>) -> String {
    let place = info.location().map_or_else(
        || "an unknown place".to_string(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    capped(format!(
        "{PANICKED}{place}: {}",
        payload_text(info.payload())
    ))
}

/// A panic's message: the text it was given, if it is text.
fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a value that is not text)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_that_is_not_text_is_named() {
        assert_eq!(payload_text(&"boom"), "boom");
        assert_eq!(payload_text(&String::from("boom")), "boom");
        assert_eq!(payload_text(&42_u8), "(a value that is not text)");
    }
}
