//! A state being received: its head (with its file, checked and mapped), then its named
//! fds as they come, until there are as many as the head said.
//!
//! Everything that comes is checked as the giver checked it: the supervisor relays what
//! it is given and reads none of it. Whatever is wrong ends the state; every fd that
//! came with it is closed when it is dropped.

use std::os::fd::OwnedFd;

use super::Inherited;
use super::limits;
use super::sealed::{self, Contents, OpenError};
use crate::control::protocol::{MAX_STATE_FDS, StateHeader};
use crate::error::{Error, StateProblem};

/// A state whose head came and some of whose named fds may still be to come.
#[derive(Debug)]
pub(super) struct Receiving {
    /// Whether it is the one later snapshot, not the answer to `take_state`.
    pub(super) update: bool,
    from: u32,
    contents: Contents,
    /// How many named fds the head said.
    expected: usize,
    fds: Vec<(String, OwnedFd)>,
}

/// Where a state being received is.
#[derive(Debug)]
pub(super) enum Progress {
    /// Whole.
    Done(Inherited),
    /// Named fds are still to come.
    More(Receiving),
}

impl Receiving {
    /// A state's head, with the fds that came with it (its file, if it has bytes),
    /// `cut` if the kernel dropped some for want of room.
    pub(super) fn begin(
        head: StateHeader,
        mut fds: Vec<OwnedFd>,
        cut: bool,
    ) -> Result<Progress, Error> {
        if cut {
            return Err(StateProblem::OutOfFds.into());
        }
        limits::check_size(head.size)?;
        let expected = usize::try_from(head.fds).unwrap_or(usize::MAX);
        if expected > MAX_STATE_FDS {
            return Err(StateProblem::TooManyFds { count: expected }.into());
        }
        let carried = usize::from(head.size > 0);
        if fds.len() != carried {
            return Err(malformed(format!(
                "the state's head came with {} fds for {carried}",
                fds.len()
            )));
        }
        let contents = match fds.pop() {
            None => Contents::Empty,
            Some(fd) => sealed::open(fd, head.size).map_err(opening)?,
        };
        let receiving = Receiving {
            update: head.update,
            from: head.from,
            contents,
            expected,
            fds: Vec::new(),
        };
        Ok(receiving.progress())
    }

    /// More of its named fds: `names`, one fd each.
    pub(super) fn more(
        mut self,
        names: Vec<String>,
        fds: Vec<OwnedFd>,
        cut: bool,
    ) -> Result<Progress, Error> {
        if cut {
            return Err(StateProblem::OutOfFds.into());
        }
        if names.is_empty() || names.len() != fds.len() {
            return Err(malformed(format!(
                "a message of the state's fds came with {} fds for {} names",
                fds.len(),
                names.len()
            )));
        }
        if self.fds.len() + names.len() > self.expected {
            return Err(malformed(format!(
                "the state's fds came to more than the {} its head said",
                self.expected
            )));
        }
        self.fds.extend(names.into_iter().zip(fds));
        let names = self.fds.iter().map(|(name, _)| name.as_str());
        limits::check_names(names).map_err(|problem| malformed(problem.to_string()))?;
        Ok(self.progress())
    }

    fn progress(self) -> Progress {
        if self.fds.len() < self.expected {
            return Progress::More(self);
        }
        Progress::Done(Inherited {
            contents: self.contents,
            fds: self.fds,
            from: self.from,
        })
    }
}

fn malformed(what: String) -> Error {
    StateProblem::Malformed { what }.into()
}

/// A state's file refused, as the program's error.
fn opening(e: OpenError) -> Error {
    match e {
        OpenError::Io(operation, source) => Error::io(operation, source),
        other => malformed(other.to_string()),
    }
}
