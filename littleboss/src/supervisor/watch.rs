//! One task per child: the one place that waits for it, speaks its channel, and keeps
//! its timers (hello, ready, lameduck). It reports to the supervisor's loop by events.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::channel::AsyncChannel;
use crate::control::protocol::{self, ChildHello, ChildMsg, ListenerInfo, SupervisorMsg};

/// What the supervisor's loop tells a child's task.
#[derive(Debug)]
pub(crate) enum ChildCmd {
    /// Ask the program to wind down; kill its process group after its lameduck time.
    Lameduck,
    /// Kill the process group now, for this reason.
    Kill(String),
}

/// What a child's task tells the supervisor's loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// The child is ready (it said so, or it ran for its settle time).
    Ready { id: u64 },
    /// The child is gone and reaped. Always the task's last event.
    Exited { id: u64, exit: Exit },
}

/// How a child ended.
#[derive(Clone, Debug)]
pub(crate) struct Exit {
    pub status: Option<ExitStatus>,
    /// Why the supervisor killed it, if it did.
    pub killed_because: Option<String>,
    pub ran: Duration,
    /// What its main reported before exiting (`Finished`), if anything.
    pub finished: Option<Result<(), String>>,
}

impl Exit {
    /// The exit code the supervisor passes on: the child's, or 1 for a signal.
    pub(crate) fn code(&self) -> i32 {
        self.status.and_then(|s| s.code()).unwrap_or(1)
    }

    /// Whether it ended badly (non-zero, a signal, or killed by the supervisor).
    pub(crate) fn failed(&self) -> bool {
        self.killed_because.is_some() || !self.status.is_some_and(|s| s.success())
    }

    /// `exited with code 3 after 120 ms`, `killed by signal 9 after 2.1 s`, ...
    pub(crate) fn describe(&self) -> String {
        let how = match (&self.killed_because, self.status) {
            (Some(why), _) => format!("was killed: {why}"),
            (None, Some(status)) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => format!("ended ({status})"),
            },
            (None, None) => "could not be waited for".to_string(),
        };
        let mut text = format!("{how} after {}", human_duration(self.ran));
        if let Some(Err(e)) = &self.finished {
            text.push_str(&format!(" (its main returned an error: {e})"));
        }
        text
    }
}

/// `120 ms`, `2.1 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The longest settle, ready or lameduck time a child may declare in its hello: a
/// reload never waits on a child for longer than this.
const MAX_CHILD_WAIT: Duration = Duration::from_secs(3600);

/// A time a child declared, in milliseconds, capped at [`MAX_CHILD_WAIT`].
fn declared(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_CHILD_WAIT)
}

/// The supervisor's defaults for a child that has not said hello yet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub hello_timeout: Duration,
    pub lameduck: Duration,
}

/// Everything one child's task needs.
#[derive(Debug)]
pub(crate) struct Watch {
    pub id: u64,
    pub name: String,
    pub process: tokio::process::Child,
    pub channel: Option<OwnedFd>,
    pub listeners: Vec<ListenerInfo>,
    /// The fds of the listeners that are on, in order; dropped once sent.
    pub fds: Vec<OwnedFd>,
    pub timing: Timing,
    pub cmds: mpsc::UnboundedReceiver<ChildCmd>,
    pub events: mpsc::UnboundedSender<Event>,
}

enum Phase {
    Hello,
    Settling,
    AwaitingReady,
    Ready,
}

impl Watch {
    /// Runs until the child is reaped; then kills whatever is left of its process group.
    pub(crate) async fn run(mut self) {
        let started = Instant::now();
        let pid = self.process.id().and_then(|p| Pid::from_raw(p as i32));
        let mut killed_because: Option<String> = None;
        let mut finished = None;
        let mut lameduck_after = self.timing.lameduck;
        let mut phase = Phase::Hello;
        let mut phase_deadline = Some(started + self.timing.hello_timeout);
        let mut kill_deadline: Option<Instant> = None;
        let mut lameduck_asked = false;
        let channel = match self.channel.take().map(AsyncChannel::new) {
            Some(Ok(channel)) => Some(channel),
            None => None,
            Some(Err(e)) => {
                kill(pid);
                killed_because = Some(format!("its channel failed: {e}"));
                None
            }
        };
        let mut channel_open = channel.is_some();
        let mut cmds_open = true;
        let status = loop {
            tokio::select! {
                status = self.process.wait() => break status.ok(),
                received = recv(channel.as_ref()), if channel_open => {
                    let msg = match received {
                        Ok(Some(received)) if received.fds.is_empty() => {
                            protocol::decode::<ChildMsg>(&received.bytes).map_err(|e| e.to_string())
                        }
                        Ok(Some(_)) => Err("it sent fds".to_string()),
                        Ok(None) => {
                            channel_open = false;
                            continue;
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    match (msg, &phase) {
                        (Ok(ChildMsg::Hello(hello)), Phase::Hello) => {
                            let Some(channel) = channel.as_ref() else { continue };
                            if let Err(reason) = self.welcome(channel, &hello).await {
                                kill(pid);
                                killed_because.get_or_insert(reason);
                                phase_deadline = None;
                                continue;
                            }
                            self.fds.clear();
                            if lameduck_asked {
                                send_lameduck(Some(channel)).await;
                            }
                            lameduck_after = declared(hello.lameduck_ms);
                            let now = Instant::now();
                            if hello.calls_ready {
                                phase = Phase::AwaitingReady;
                                phase_deadline = Some(now + declared(hello.ready_timeout_ms));
                            } else {
                                phase = Phase::Settling;
                                phase_deadline = Some(now + declared(hello.settle_ms));
                            }
                        }
                        (Ok(ChildMsg::Ready), Phase::Settling | Phase::AwaitingReady) => {
                            phase = Phase::Ready;
                            phase_deadline = None;
                            let _ = self.events.send(Event::Ready { id: self.id });
                        }
                        (Ok(ChildMsg::Ready), Phase::Ready) => {}
                        (Ok(ChildMsg::Finished(result)), Phase::Settling | Phase::AwaitingReady | Phase::Ready) => {
                            finished = Some(result);
                        }
                        (Ok(other), _) => {
                            kill(pid);
                            killed_because.get_or_insert(format!("it sent an unexpected message: {other:?}"));
                            channel_open = false;
                        }
                        (Err(e), _) => {
                            kill(pid);
                            killed_because.get_or_insert(format!("it sent a malformed message: {e}"));
                            channel_open = false;
                        }
                    }
                }
                cmd = self.cmds.recv(), if cmds_open => match cmd {
                    Some(ChildCmd::Lameduck) => {
                        // Before its hello the child waits for its listeners, not for
                        // this: it gets lameduck right after them.
                        lameduck_asked = true;
                        if !matches!(phase, Phase::Hello) {
                            send_lameduck(channel.as_ref()).await;
                        }
                        let deadline = Instant::now() + lameduck_after;
                        kill_deadline = Some(kill_deadline.map_or(deadline, |d| d.min(deadline)));
                    }
                    Some(ChildCmd::Kill(reason)) => {
                        kill(pid);
                        killed_because.get_or_insert(reason);
                    }
                    None => cmds_open = false,
                },
                _ = sleep_until(phase_deadline), if phase_deadline.is_some() => {
                    phase_deadline = None;
                    match phase {
                        Phase::Hello => {
                            kill(pid);
                            killed_because.get_or_insert(format!(
                                "it did not say hello within {}",
                                human_duration(self.timing.hello_timeout)
                            ));
                        }
                        Phase::AwaitingReady => {
                            kill(pid);
                            killed_because.get_or_insert(format!(
                                "it did not call ready() within {}",
                                human_duration(started.elapsed())
                            ));
                        }
                        Phase::Settling => {
                            phase = Phase::Ready;
                            let _ = self.events.send(Event::Ready { id: self.id });
                        }
                        Phase::Ready => {}
                    }
                }
                _ = sleep_until(kill_deadline), if kill_deadline.is_some() => {
                    kill_deadline = None;
                    kill(pid);
                    killed_because.get_or_insert(format!(
                        "it was still running {} after lameduck",
                        human_duration(lameduck_after)
                    ));
                }
            }
        };
        // Whatever the program left in its process group goes with it.
        kill(pid);
        let exit = Exit {
            status,
            killed_because,
            ran: started.elapsed(),
            finished,
        };
        let _ = self.events.send(Event::Exited { id: self.id, exit });
    }

    /// Checks a hello and answers it: the listeners, or a refusal.
    async fn welcome(&self, channel: &AsyncChannel, hello: &ChildHello) -> Result<(), String> {
        if hello.name != self.name {
            let reason = format!("it is service {:?}, not {:?}", hello.name, self.name);
            let refusal = SupervisorMsg::Refused {
                reason: reason.clone(),
            };
            let _ = channel.send(&protocol::encode(&refusal), &[]).await;
            return Err(reason);
        }
        let welcome = SupervisorMsg::Welcome {
            listeners: self.listeners.clone(),
        };
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(|fd| fd.as_fd()).collect();
        channel
            .send(&protocol::encode(&welcome), &fds)
            .await
            .map_err(|e| format!("sending its listeners failed: {e}"))
    }
}

async fn send_lameduck(channel: Option<&AsyncChannel>) {
    if let Some(channel) = channel {
        // A child that is gone cannot be told; its exit is what the task waits for.
        let _ = channel
            .send(&protocol::encode(&SupervisorMsg::Lameduck), &[])
            .await;
    }
}

async fn recv(channel: Option<&AsyncChannel>) -> std::io::Result<Option<crate::channel::Received>> {
    match channel {
        Some(channel) => channel.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever if there is none (for a `select!` branch).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGKILL to the child's process group (its pid, as it was started with
/// `process_group(0)`). A group that is already gone is fine.
fn kill(pid: Option<Pid>) {
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}
