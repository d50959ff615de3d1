//! Data-connection setup and transfer parameters: PORT, PASV, EPRT, EPSV, TYPE, MODE, STRU
//! (RFC 959 §4.1.2, RFC 2428, RFC 2577 §3).

use super::*;
use crate::config::ftp::PassiveOverride;

#[test]
fn type_mode_stru_syst_noop_allo() {
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("TYPE I\r\n")), "200 Switching to Binary mode.\r\n");
    assert_eq!(replies(&c.send("TYPE A\r\n")), "200 Switching to ASCII mode.\r\n");
    assert_eq!(replies(&c.send("TYPE L 8\r\n")), "200 Switching to Binary mode.\r\n");
    assert_eq!(replies(&c.send("MODE S\r\n")), "200 Mode set to S.\r\n");
    assert_eq!(replies(&c.send("STRU F\r\n")), "200 Structure set to F.\r\n");
    assert_eq!(codes(&c.send("ALLO 100\r\n")), [202]);
}

#[test]
fn ascii_type_is_passed_on() {
    let mut c = Client::new();
    c.login("alice");
    c.passive();
    let (_, a) = c.action("STOR notes.txt\r\n");
    assert!(matches!(
        a,
        Action::Transfer { kind: TransferKind::Stor { ascii: true, mode: StoreMode::Replace, .. }, .. }
    ));
}

#[test]
fn pasv_advertises_local_address() {
    let mut c = Client::new();
    c.login_anonymous();
    let (t, a) = c.action("PASV\r\n");
    assert_eq!(
        a,
        Action::OpenPassive {
            bind: "192.0.2.1".parse().unwrap(),
            peer_only: Some("192.0.2.5".parse().unwrap())
        }
    );
    let outs = c.complete(t, OpResult::Passive(Ok(50000)));
    assert_eq!(replies(&outs), "227 Entering Passive Mode (192,0,2,1,195,80).\r\n");
}

#[test]
fn pasv_uses_override_for_client_network() {
    let mut cfg = config();
    cfg.ftp.passive.address = Some("203.0.113.9".parse().unwrap());
    cfg.ftp.passive.overrides.push(PassiveOverride {
        network: "10.0.0.0/8".parse().unwrap(),
        address: "10.0.0.1".parse().unwrap(),
    });
    cfg.ftp.passive.require_same_peer = false;
    let mut c = Client::with(settings_from(&cfg), "[::ffff:10.2.3.4]:5000", "[::ffff:172.17.0.2]:21");
    c.login_anonymous();
    let (t, a) = c.action("PASV\r\n");
    assert_eq!(a, Action::OpenPassive { bind: "172.17.0.2".parse().unwrap(), peer_only: None });
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Ok(50001)))),
        "227 Entering Passive Mode (10,0,0,1,195,81).\r\n"
    );
    let mut c = Client::with(settings_from(&cfg), "198.51.100.1:5000", "172.17.0.2:21");
    c.login_anonymous();
    let (t, _) = c.action("PASV\r\n");
    assert!(replies(&c.complete(t, OpResult::Passive(Ok(50001)))).contains("(203,0,113,9,"));
}

#[test]
fn pasv_on_ipv6_refused_epsv_works() {
    let mut c = Client::with(settings_from(&config()), "[2001:db8::5]:4000", "[2001:db8::1]:21");
    c.login_anonymous();
    let outs = c.send("PASV\r\n");
    // Permanent (5xx), so clients fall back to EPSV instead of retrying PASV.
    assert_eq!(codes(&outs), [522]);
    assert!(actions(&outs).is_empty());
    assert_eq!(replies(&c.send("EPSV 1\r\n")), "522 Network protocol not supported, use (2)\r\n");
    let (t, _) = c.action("EPSV 2\r\n");
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Ok(50002)))),
        "229 Entering Extended Passive Mode (|||50002|)\r\n"
    );
    let (t, _) = c.action("EPSV\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Passive(Ok(50003)))), [229]);
    assert_eq!(
        replies(&c.send("EPRT |2|2001:db8::5|4001|\r\n")),
        "200 EPRT command successful. Consider using EPSV.\r\n"
    );
}

#[test]
fn epsv_on_ipv4_rejects_protocol_2() {
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("EPSV 2\r\n")), "522 Network protocol not supported, use (1)\r\n");
    assert_eq!(codes(&c.send("EPSV 3\r\n")), [522]);
    assert_eq!(codes(&c.send("EPRT |9|x|1|\r\n")), [522]);
}

#[test]
fn epsv_all_refuses_other_data_commands() {
    // RFC 2428 §4.
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("EPSV ALL\r\n")), "200 EPSV ALL ok.\r\n");
    for cmd in ["PORT 192,0,2,5,8,0", "PASV", "EPRT |1|192.0.2.5|2048|"] {
        let outs = c.send(&format!("{cmd}\r\n"));
        assert_eq!(codes(&outs), [503], "{cmd}");
        assert!(actions(&outs).is_empty());
    }
    let (t, _) = c.action("EPSV\r\n");
    assert_eq!(codes(&c.complete(t, OpResult::Passive(Ok(50000)))), [229]);
}

#[test]
fn port_bounce_protection() {
    // RFC 2577 §3: only the control peer, only ports >= 1024.
    let mut c = Client::new();
    c.login_anonymous();
    assert_eq!(replies(&c.send("PORT 198,51,100,7,8,0\r\n")), "500 Illegal PORT command.\r\n");
    assert_eq!(codes(&c.send("EPRT |1|198.51.100.7|2048|\r\n")), [500]);
    assert_eq!(codes(&c.send("PORT 192,0,2,5,0,25\r\n")), [504]);
    assert_eq!(codes(&c.send("RETR f\r\n")), [425], "refused PORT leaves no data connection");
    assert_eq!(codes(&c.send("PORT 192,0,2,5,8,0\r\n")), [200]);
    let (_, a) = c.action("RETR f\r\n");
    let Action::Transfer { data, .. } = a else { panic!() };
    assert_eq!(data, DataEndpoint::Active("192.0.2.5:2048".parse().unwrap()));
}

#[test]
fn active_mode_can_be_disabled() {
    let mut cfg = config();
    cfg.ftp.active.enabled = false;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login_anonymous();
    assert_eq!(codes(&c.send("PORT 192,0,2,5,8,0\r\n")), [502]);
}

#[test]
fn port_after_pasv_closes_the_listener() {
    let mut c = Client::new();
    c.login_anonymous();
    c.passive();
    let outs = c.send("PORT 192,0,2,5,8,0\r\n");
    assert_eq!(events(&outs), [Event::ClosePassive]);
}

#[test]
fn passive_listener_failure_is_425() {
    let mut c = Client::new();
    c.login_anonymous();
    let (t, _) = c.action("PASV\r\n");
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Err(PassiveRefusal::NoPort)))),
        "425 Can't open passive connection.\r\n"
    );
    assert_eq!(codes(&c.send("RETR f\r\n")), [425]);
    // Over `max_ports_per_ip`: still 425 (transient), saying why.
    let (t, _) = c.action("EPSV\r\n");
    assert_eq!(
        replies(&c.complete(t, OpResult::Passive(Err(PassiveRefusal::PerAddress)))),
        "425 Too many passive connections open from your address; use or close them first.\r\n"
    );
}

/// A logged-in client whose PASV listener was just opened, with a 10 s accept timeout.
fn passive_with_a_10s_accept_timeout() -> Client {
    let mut cfg = config();
    cfg.ftp.passive.accept_timeout_secs = 10;
    let mut c = Client::with(settings_from(&cfg), PEER, LOCAL);
    c.login_anonymous();
    c.passive();
    c
}

#[test]
fn an_unused_passive_listener_is_closed_after_the_accept_timeout() {
    let mut c = passive_with_a_10s_accept_timeout();
    assert!(c.s.poll_timeout().unwrap() <= c.now + Duration::from_secs(10), "a timer for it");
    // NOOP keeps the session, not the listener.
    assert!(c.advance(Duration::from_secs(6)).is_empty());
    assert_eq!(codes(&c.send("NOOP\r\n")), [200]);
    let outs = c.advance(Duration::from_secs(4));
    assert_eq!((events(&outs), replies(&outs)), (vec![Event::ClosePassive], String::new()));
    assert_eq!(replies(&c.send("RETR f\r\n")), "425 Use PORT, PASV or EPSV first.\r\n");
    // A transfer command in time takes the listener: no timer of its own after that.
    c.passive();
    let (t, _) = c.action("RETR f\r\n");
    assert!(events(&c.advance(Duration::from_secs(30))).is_empty());
    assert_eq!(codes(&c.complete(t, OpResult::Transfer(TransferEvent::Started))), [150]);
}

#[test]
fn a_failed_open_gives_the_kept_listener_a_new_accept_timeout() {
    let mut c = passive_with_a_10s_accept_timeout();
    c.advance(Duration::from_secs(8));
    let (t, _) = c.action("RETR missing\r\n");
    let failed = OpResult::Transfer(TransferEvent::Failed(TransferError::Fs(FsError::NotFound)));
    assert_eq!(codes(&c.complete(t, failed)), [550]);
    // The client retries on the same listener (as with vsftpd), and gets time to.
    assert!(events(&c.advance(Duration::from_secs(8))).is_empty());
    assert_eq!(events(&c.advance(Duration::from_secs(2))), [Event::ClosePassive]);
}
