//! HTTPS (HTTP/2 or HTTP/1.1, as ALPN chooses) that reloads without dropping a request,
//! and refuses a reload to a certificate it cannot load.
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
//!     -subj /CN=localhost -addext subjectAltName=DNS:localhost \
//!     -keyout key.pem -out cert.pem
//! cargo run -p littleboss-examples --example https -- --littleboss=start --cert cert.pem --key key.pem &
//! curl --cacert cert.pem https://localhost:8443/     # pid 1234 exe /.../https
//! cargo run -p littleboss-examples --example https -- --littleboss=reload
//! ```
//!
//! The certificate and key are program arguments: a reload without `--` keeps them, and
//! `--littleboss=reload -- --cert new.pem --key new-key.pem` moves to new ones. They are
//! loaded before the server says ready, so a reload to a certificate that is missing or
//! not PEM fails, the old process keeps serving, and the reload command prints why.

use std::convert::Infallible;
use std::path::PathBuf;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};

/// The program's own arguments.
#[derive(Parser)]
struct Args {
    /// The certificate chain, PEM.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key, PEM.
    #[arg(long)]
    key: PathBuf,
}

#[littleboss::main(
    name = "https",
    listener(https = "tcp:127.0.0.1:8443"),
    calls_ready = true
)]
async fn main(lb: littleboss::Context) -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse_from(lb.args());
    let tls = littleboss::http::Tls::from_pem_files(&args.cert, &args.key)?;
    let greeting = Bytes::from(format!(
        "pid {} exe {}\n",
        std::process::id(),
        std::env::current_exe()?.display()
    ));
    let service = service_fn(move |_: Request<Incoming>| {
        let response = Response::new(Full::new(greeting.clone()));
        async move { Ok::<_, Infallible>(response) }
    });
    littleboss::http::Server::new()
        .tls(tls)
        .serve(&lb, "https", service)
        .await?;
    Ok(())
}
