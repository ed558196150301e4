//! The gRPC API on TCP, as a fleet reaches it: TLS with certificates made here (a private CA, the daemons' and a
//! client's for mTLS), tokens in two roles (read-only and admin), plain TCP only when asked for by name, and
//! `llmopsctl` and `llmops-top` (the fleet view) over `https://`.
use llmops_e2e::daemon::{binary, Daemon, StartOptions};
use llmops_e2e::fake_upstream::{Behavior, FakeUpstream};
use llmops_e2e::tmux::Tmux;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const ADMIN: &str = "admin-token-0123";
const READER: &str = "reader-token-4567";

/// PEM files in a directory: a CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and
/// a second CA that signed nothing the daemon trusts.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, ca_key) = make_ca("llmops test CA");
        let (other_ca, _) = make_ca("someone else's CA");
        let issue = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, stem: &str| {
            let mut params = CertificateParams::new(names).expect("names");
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca, &ca_key).expect("signed");
            std::fs::write(dir.path().join(format!("{stem}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).expect("write key");
        };
        issue(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "server");
        issue(vec!["llmops-operator".into()], ExtendedKeyUsagePurpose::ClientAuth, "client");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        std::fs::write(dir.path().join("other-ca.pem"), other_ca.pem()).expect("write other ca");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `[server]` keys for a TLS listener; with `mtls`, clients must show a certificate the CA signed.
    fn server_config(&self, mtls: bool) -> String {
        let ca = if mtls { format!("grpc_tls_client_ca = {:?}\n", self.path("ca.pem")) } else { String::new() };
        format!(
            "[server]\ngrpc_tls_cert = {:?}\ngrpc_tls_key = {:?}\n{ca}",
            self.path("server.pem"),
            self.path("server.key")
        )
    }
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert, key)
}

fn engine_config(upstream: &str) -> String {
    format!("\n[engines.fake]\nkind = \"openai\"\nbase_url = \"{upstream}\"\nmodels = [\"fake-model\"]\n")
}

async fn start_tls(pki: &Pki, mtls: bool, upstream: &FakeUpstream, dir: &Path) -> Daemon {
    let options = StartOptions {
        grpc_listen: Some("127.0.0.1:0".into()),
        env: vec![("LLMOPS_TOKEN".into(), ADMIN.into()), ("LLMOPS_READ_TOKEN".into(), READER.into())],
        ..StartOptions::default()
    };
    let config = pki.server_config(mtls) + &engine_config(&upstream.base_url());
    Daemon::start_with(&config, dir, &options).await.expect("llmopsd starts with TLS")
}

/// `llmopsctl` with no token or TLS settings from the environment, only the arguments given.
fn ctl(args: &[&str]) -> Output {
    std::process::Command::new(binary("llmopsctl").expect("llmopsctl is built"))
        .env_remove("LLMOPS_TOKEN")
        .env_remove("LLMOPS_CONNECT")
        .env_remove("LLMOPS_TLS_CA")
        .env_remove("LLMOPS_TLS_CERT")
        .env_remove("LLMOPS_TLS_KEY")
        .args(args)
        .output()
        .expect("llmopsctl runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn tls_with_client_certificates_and_two_roles() {
    let pki = Pki::new();
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start_tls(&pki, true, &upstream, dir.path()).await;
    let address = daemon.grpc_listen.clone();
    assert!(address.starts_with("https://127.0.0.1:"), "the daemon announces an https address: {address}");
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let tls: Vec<&str> = vec!["--connect", &address, "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let with = |token: &str, rest: &[&str]| {
        let mut args = tls.clone();
        args.extend(["--token", token]);
        args.extend(rest);
        ctl(&args)
    };

    // The read-only role reads.
    let status = with(READER, &["--json", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains(&address), "status names the https listener");
    let traces = with(READER, &["traces"]);
    assert!(traces.status.success(), "{}", stderr(&traces));

    // It does not administer: PERMISSION_DENIED naming the role, for keys, prompts and cache clears alike.
    for admin_call in [&["keys", "create", "--tenant", "x"][..], &["keys", "list"], &["cache", "clear"]] {
        let refused = with(READER, admin_call);
        assert_eq!(refused.status.code(), Some(1), "{admin_call:?}: {}", stderr(&refused));
        let message = stderr(&refused);
        assert!(message.contains("PermissionDenied") || message.contains("permission"), "{admin_call:?}: {message}");
        assert!(message.contains("admin role") && message.contains("read-only role"), "{message}");
    }
    // The admin token can.
    let created = with(ADMIN, &["keys", "create", "--tenant", "ops"]);
    assert!(created.status.success(), "{}", stderr(&created));

    // A wrong token is unauthenticated, over TLS as before.
    let wrong = with("guess", &["status"]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("Unauthenticated"), "{}", stderr(&wrong));

    // mTLS: without a client certificate the handshake fails before any token is read.
    let no_cert = ctl(&["--connect", &address, "--tls-ca", &ca, "--token", ADMIN, "status"]);
    assert!(!no_cert.status.success(), "a client without a certificate got through");
    // A daemon certificate the client's CA did not sign is refused by the client.
    let other_ca = pki.path("other-ca.pem");
    let untrusted =
        ctl(&["--connect", &address, "--tls-ca", &other_ca, "--tls-cert", &cert, "--tls-key", &key, "status"]);
    assert!(!untrusted.status.success(), "a daemon signed by an unknown CA was trusted");
    assert!(stderr(&untrusted).contains("--tls-ca names the CA"), "{}", stderr(&untrusted));
    // Connections that never finish a handshake do not hold the listener up for anyone else.
    let mut stalled = Vec::new();
    let port = address.rsplit(':').next().unwrap_or_default().to_string();
    for _ in 0..20 {
        stalled.push(tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.expect("connect"));
    }
    let beside = with(READER, &["status"]);
    assert!(beside.status.success(), "served beside stalled handshakes: {}", stderr(&beside));
    drop(stalled);
    // Plain text to the TLS port fails, and leaves the listener serving.
    let plain = address.replace("https://", "http://");
    let cleartext = ctl(&["--connect", &plain, "--token", ADMIN, "status"]);
    assert!(!cleartext.status.success());
    assert!(stderr(&cleartext).contains("connect to https://"), "{}", stderr(&cleartext));
    let after = with(READER, &["status"]);
    assert!(after.status.success(), "still serving after bad handshakes: {}", stderr(&after));
}

#[tokio::test]
async fn tcp_without_tls_needs_insecure_by_name_and_bad_tls_files_stop_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StartOptions {
        grpc_listen: Some("127.0.0.1:0".into()),
        env: vec![("LLMOPS_TOKEN".into(), ADMIN.into())],
        ..StartOptions::default()
    };
    let refused = match Daemon::start_with("", dir.path(), &options).await {
        Ok(_) => panic!("llmopsd served plain TCP without grpc_insecure"),
        Err(error) => format!("{error:#}"),
    };
    assert!(refused.contains("grpc_tls_cert") && refused.contains("grpc_insecure"), "{refused}");

    // A certificate path that is not PEM, and a huge one, are named.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let config = format!("[server]\ngrpc_tls_cert = {:?}\ngrpc_tls_key = {:?}\n", junk.display(), junk.display());
    let bad = match Daemon::start_with(&config, &dir.path().join("d2"), &options).await {
        Ok(_) => panic!("llmopsd started with a junk certificate"),
        Err(error) => format!("{error:#}"),
    };
    assert!(bad.contains("grpc_tls_cert") && bad.contains("not a PEM file"), "{bad}");

    // A certificate and a key that do not belong together stop startup (before the daemon says it is ready).
    let pki = Pki::new();
    let mismatched = format!(
        "[server]\ngrpc_tls_cert = {:?}\ngrpc_tls_key = {:?}\n",
        pki.path("server.pem"),
        pki.path("client.key")
    );
    let error = match Daemon::start_with(&mismatched, &dir.path().join("d5"), &options).await {
        Ok(_) => panic!("llmopsd started with a key that is not its certificate's"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("grpc_tls_key") && error.contains("TLS identity"), "{error}");

    // The same read-only and admin token is a configuration mistake, refused.
    let same = StartOptions {
        env: vec![("LLMOPS_TOKEN".into(), ADMIN.into()), ("LLMOPS_READ_TOKEN".into(), ADMIN.into())],
        ..options.clone()
    };
    let error = match Daemon::start_with(&pki.server_config(false), &dir.path().join("d3"), &same).await {
        Ok(_) => panic!("llmopsd accepted the same token for both roles"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("LLMOPS_READ_TOKEN"), "{error}");

    // Plain TCP asked for by name starts, with a warning in the log.
    let insecure = Daemon::start_with("[server]\ngrpc_insecure = true\n", &dir.path().join("d4"), &options)
        .await
        .expect("plain TCP with grpc_insecure");
    assert!(insecure.log_tail(50).contains("unencrypted"), "{}", insecure.log_tail(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_fleet_view_over_tls_with_two_daemons() {
    if !Tmux::available() {
        panic!("tmux is not installed: run scripts/setup.sh (it installs tmux for this test)");
    }
    let pki = Pki::new();
    let upstream = FakeUpstream::start(Behavior::default()).await.expect("fake upstream");
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let daemon_a = start_tls(&pki, false, &upstream, dir_a.path()).await;
    let daemon_b = start_tls(&pki, true, &upstream, dir_b.path()).await;
    let top: PathBuf = binary("llmops-top").expect("llmops-top is built");
    // The read-only token is enough for the console's views.
    let command = format!(
        "env -u LLMOPS_TOKEN {} --connect {},{} --tls-ca {} --tls-cert {} --tls-key {} --token {READER}; sleep 60",
        top.display(),
        daemon_a.grpc_listen,
        daemon_b.grpc_listen,
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let tmux = Tmux::start(&command, 140, 30).expect("tmux starts");
    let wait = Duration::from_secs(20);
    let screen = tokio::task::block_in_place(|| {
        tmux.wait_for("two daemons up over TLS", wait, |s| s.contains("2 hosts") && s.matches("● up").count() == 2)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let port_b = daemon_b.grpc_listen.rsplit(':').next().unwrap_or_default();
    assert!(screen.contains(port_b), "the fleet lists the second daemon: {screen}");
}
