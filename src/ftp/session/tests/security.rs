//! FTPS transcripts (RFC 4217): AUTH, PBSZ, PROT, CCC, REIN, FEAT, and `ftp.tls.required`.

use super::*;
use crate::config::tls::TlsRequired;

fn tls_client(required: TlsRequired) -> Client {
    let mut cfg = config();
    cfg.ftp.tls.enabled = true;
    cfg.ftp.tls.required = required;
    Client::with(settings_from(&cfg), PEER, LOCAL)
}

impl Client {
    /// AUTH TLS, then (the handshake being the io layer's) PBSZ 0 and PROT `level`.
    fn secure(&mut self, level: &str) {
        let outs = self.send("AUTH TLS\r\n");
        assert_eq!(replies(&outs), "234 AUTH TLS successful; start the TLS handshake.\r\n");
        assert_eq!(events(&outs), [Event::StartTls]);
        assert_eq!(codes(&self.send(&format!("PBSZ 0\r\nPROT {level}\r\n"))), [200, 200]);
    }
}

#[test]
fn auth_tls_answers_234_then_asks_for_the_handshake() {
    let mut c = tls_client(TlsRequired::None);
    let outs = c.send("AUTH TLS\r\n");
    // The 234 goes out in clear before the io layer starts the handshake.
    assert!(
        matches!(&outs[..], [Output::Reply(r), Output::Event(Event::StartTls)] if r.starts_with(b"234 "))
    );
    assert!(c.s.control_protected());
    assert_eq!(codes(&c.send("AUTH TLS\r\n")), [503], "RFC 4217 §4: already protected");
    assert_eq!(codes(&c.send("AUTH SSL\r\n")), [503]);
}

#[test]
fn auth_ssl_is_an_alias_and_other_mechanisms_get_504() {
    let mut c = tls_client(TlsRequired::None);
    assert_eq!(codes(&c.send("AUTH GSSAPI\r\n")), [504]);
    let outs = c.send("AUTH SSL\r\n");
    assert_eq!(codes(&outs), [234]);
    assert_eq!(events(&outs), [Event::StartTls]);
}

#[test]
fn commands_sent_with_auth_before_the_handshake_are_dropped() {
    // STARTTLS injection (CVE-2011-0411): lines in clear after AUTH must not run as if
    // they came through TLS.
    let mut c = tls_client(TlsRequired::None);
    let outs = c.send("AUTH TLS\r\nUSER anonymous\r\nPASS x\r\nDELE /f\r\n");
    assert_eq!(codes(&outs), [234]);
    assert!(actions(&outs).is_empty() && events(&outs) == [Event::StartTls]);
    // A partial line held before AUTH is gone too: the next line stands alone.
    let outs = c.send("NOOP\r\n");
    assert_eq!(codes(&outs), [200]);
}

#[test]
fn auth_without_tls_configured_is_502() {
    let mut c = Client::new();
    assert_eq!(codes(&c.send("AUTH TLS\r\nPBSZ 0\r\nPROT P\r\n")), [502, 503, 503]);
    assert!(!c.s.control_protected());
}

#[test]
fn auth_after_login_is_out_of_sequence() {
    let mut c = tls_client(TlsRequired::None);
    c.login_anonymous();
    assert_eq!(codes(&c.send("AUTH TLS\r\n")), [503]);
}

#[test]
fn pbsz_and_prot_follow_rfc4217_order() {
    let mut c = tls_client(TlsRequired::None);
    // §8/§9: both need a protected control connection; PROT needs PBSZ first.
    assert_eq!(codes(&c.send("PBSZ 0\r\nPROT P\r\n")), [503, 503]);
    assert_eq!(codes(&c.send("AUTH TLS\r\n")), [234]);
    assert_eq!(codes(&c.send("PROT P\r\n")), [503]);
    assert_eq!(replies(&c.send("PBSZ 1024\r\n")), "200 PBSZ=0\r\n");
    assert_eq!(codes(&c.send("PROT S\r\nPROT E\r\nPROT Q\r\n")), [536, 536, 504]);
    assert_eq!(codes(&c.send("PROT P\r\nPROT C\r\n")), [200, 200]);
}

#[test]
fn prot_p_marks_transfers_protected_and_prot_c_clears_it() {
    let mut c = tls_client(TlsRequired::None);
    c.secure("P");
    c.login_anonymous();
    c.passive();
    let (_, a) = c.action("LIST\r\n");
    assert!(matches!(a, Action::Transfer { protect: true, .. }), "{a:?}");
    let mut c = tls_client(TlsRequired::None);
    c.secure("C");
    c.login_anonymous();
    c.passive();
    let (_, a) = c.action("RETR f\r\n");
    assert!(matches!(a, Action::Transfer { protect: false, .. }), "{a:?}");
}

#[test]
fn ccc_is_refused() {
    let mut c = tls_client(TlsRequired::None);
    assert_eq!(codes(&c.send("CCC\r\n")), [533]);
    c.secure("P");
    assert_eq!(codes(&c.send("CCC\r\n")), [534]);
    assert!(c.s.control_protected());
}

#[test]
fn feat_lists_auth_pbsz_prot_only_with_tls() {
    let mut c = tls_client(TlsRequired::None);
    let feat = replies(&c.send("FEAT\r\n"));
    for f in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(feat.contains(f), "{f:?} missing from {feat}");
    }
    assert!(feat.starts_with("211-Features:\r\n") && feat.ends_with("211 End\r\n"), "{feat}");
    let plain = replies(&Client::new().send("FEAT\r\n"));
    assert!(!plain.contains("AUTH") && !plain.contains("PROT"), "{plain}");
}

#[test]
fn rein_keeps_the_control_protected_and_forgets_prot() {
    let mut c = tls_client(TlsRequired::None);
    c.secure("P");
    c.login_anonymous();
    let stat = replies(&c.send("STAT\r\n"));
    assert!(stat.contains("Control connection is protected by TLS"), "{stat}");
    assert!(stat.contains("Data connections will be protected by TLS"), "{stat}");
    assert_eq!(codes(&c.send("REIN\r\n")), [220]);
    assert!(c.s.control_protected(), "falling back to clear would be CCC");
    assert_eq!(codes(&c.send("PROT P\r\n")), [503], "PBSZ again after REIN");
    c.login_anonymous();
    let stat = replies(&c.send("STAT\r\n"));
    assert!(stat.contains("Data connections will be plain text"), "{stat}");
}

#[test]
fn implicit_tls_sessions_start_protected() {
    let mut cfg = config();
    cfg.ftp.tls.enabled = true;
    let mut s = Session::new_implicit_tls(
        settings_from(&cfg),
        PEER.parse().unwrap(),
        LOCAL.parse().unwrap(),
        Instant::now(),
    );
    assert!(s.control_protected());
    assert_eq!(codes(&drain(&mut s)), [220]);
    s.handle_input(b"AUTH TLS\r\nPBSZ 0\r\nPROT P\r\n", Instant::now());
    assert_eq!(codes(&drain(&mut s)), [503, 200, 200]);
}

#[test]
fn accounts_policy_refuses_named_users_in_clear_before_the_password() {
    let mut c = tls_client(TlsRequired::Accounts);
    let outs = c.send("USER alice\r\n");
    assert_eq!(codes(&outs), [530]);
    // The password never gets a chance: PASS is out of sequence.
    assert_eq!(codes(&c.send("PASS secret\r\n")), [503]);
    // Unknown names are refused alike (no account enumeration).
    assert_eq!(codes(&c.send("USER mallory\r\n")), [530]);
    // Anonymous may stay in clear, data too.
    c.login_anonymous();
    c.passive();
    let (_, a) = c.action("RETR f\r\n");
    assert!(matches!(a, Action::Transfer { protect: false, .. }));
}

#[test]
fn accounts_policy_requires_protected_data_for_named_users() {
    let mut c = tls_client(TlsRequired::Accounts);
    assert_eq!(codes(&c.send("AUTH TLS\r\n")), [234]);
    c.login("alice");
    c.passive();
    // No PROT yet: data would be clear.
    assert_eq!(codes(&c.send("RETR f\r\n")), [521]);
    assert_eq!(codes(&c.send("PBSZ 0\r\nPROT C\r\n")), [200, 534]);
    assert_eq!(codes(&c.send("LIST\r\n")), [521]);
    assert_eq!(codes(&c.send("PROT P\r\n")), [200]);
    let (t, a) = c.action("LIST\r\n");
    assert!(matches!(a, Action::Transfer { protect: true, .. }));
    assert_eq!(codes(&c.complete(t, OpResult::Transfer(TransferEvent::Started))), [150]);
    let done = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::TlsNotResumed)));
    assert_eq!(codes(&done), [522]);
    // The control connection stays usable.
    assert_eq!(codes(&c.send("NOOP\r\n")), [200]);
}

#[test]
fn all_policy_binds_anonymous_too() {
    let mut c = tls_client(TlsRequired::All);
    assert_eq!(codes(&c.send("USER anonymous\r\n")), [530]);
    c.secure("C");
    c.login_anonymous();
    c.passive();
    assert_eq!(codes(&c.send("NLST\r\n")), [521]);
}

#[test]
fn data_tls_failures_have_their_replies() {
    let mut c = tls_client(TlsRequired::None);
    c.secure("P");
    c.login_anonymous();
    c.passive();
    let (t, _) = c.action("RETR f\r\n");
    c.complete(t, OpResult::Transfer(TransferEvent::Started));
    let done = c.complete(t, OpResult::Transfer(TransferEvent::Failed(TransferError::TlsHandshake)));
    assert_eq!(codes(&done), [425]);
}
