//! `lb-reload-chmod`: littleboss's client commands for service `lbhttp` (it declares the
//! listeners of `lb-http`), from a file that is no longer executable, or no longer
//! there, when the supervisor looks at it.
//!
//! With `--chmod-self` among its arguments it first sets its own file's mode to 0644,
//! and only then lets littleboss run the mode the command line asks for: so
//! `COPY --littleboss=reload --chmod-self` asks the supervisor to run a file with no
//! execute bit. With `--unlink-self` it deletes its own file first instead: the reload
//! must run the very (deleted) binary that asked. As a child it calls `ready()` and
//! waits for lameduck. (The attribute's generated `main` would send the request before any of
//! the program's code runs; this program uses the builder instead, to act first.) Run
//! it from a copy: it makes the very file it runs from unusable.

use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os()
        .skip(1)
        .any(|arg| arg == "--unlink-self")
    {
        let removed = std::env::current_exe().and_then(std::fs::remove_file);
        if let Err(e) = removed {
            littleboss_tests::say!("lb-reload-chmod: cannot delete this executable: {e}");
            return ExitCode::from(2);
        }
    }
    if std::env::args_os().skip(1).any(|arg| arg == "--chmod-self") {
        let chmod = std::env::current_exe()
            .and_then(|exe| std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)));
        if let Err(e) = chmod {
            littleboss_tests::say!("lb-reload-chmod: cannot chmod this executable: {e}");
            return ExitCode::from(2);
        }
    }
    littleboss::Littleboss::new("lbhttp")
        .listener("http", "tcp:127.0.0.1:0")
        .listener("spare", "tcp:")
        .calls_ready(true)
        .run_sync(|lb| {
            lb.ready();
            while !lb.is_lameduck() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
}
