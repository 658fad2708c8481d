//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` (each a few lines that
//! call [`run`]) and by `cargo test`, which replays every file under `corpus/fuzz/` on
//! stable Rust so a crash found once stays fixed.

/// Every target: its name (also the directory under `corpus/fuzz/` and the cargo-fuzz
/// target name) and the function that checks one input.
/// A fuzz target: checks one input, panicking on a broken invariant.
pub type Target = fn(&[u8]);

pub mod codec_ops;
pub mod dcerpc_ops;
pub mod emsmdb_ops;
pub mod frontend_ops;
pub mod gc_ops;
pub mod imap_ops;
pub mod kerberos_ops;
pub mod ndr_ops;
pub mod ops;
pub mod oxcrpc_ops;
pub mod pop3_ops;
pub mod registration_ops;
pub mod reply_ops;
pub mod rpc_ops;
pub mod rpch_ops;
pub mod rts_ops;
pub mod sasl_ops;
pub mod script_scenario_ops;
#[cfg(test)]
mod seeds;
pub mod web_ops;
pub mod webdav_ops;

pub const TARGETS: &[(&str, Target)] = &[
    ("ntlm_message_decode", crate::ntlm::fuzz_decode),
    ("ntlm_handshake", crate::ntlm::fuzz_handshake),
    ("pop3_command_decode", crate::pop3::fuzz_command_decode),
    ("pop3_response_decode", crate::pop3::fuzz_response_decode),
    ("pop3_server_session", crate::pop3::fuzz_server_session),
    ("imap_command_decode", crate::imap::fuzz_command_decode),
    (
        "imap_response_decode",
        crate::driver::fuzz_imap_response_decode,
    ),
    ("imap_server_session", crate::imap::fuzz_server_session),
    ("imap_client_session", crate::driver::fuzz_imap_client),
    ("pop3_client_session", crate::driver::fuzz_pop3_client),
    (
        "mapi_client_session",
        crate::driver::mapi_client::fuzz_mapi_client,
    ),
    ("frontend_session", crate::frontend::fuzz_frontend_session),
    ("lab_file_decode", lab_file_decode),
    ("script_decode", script_scenario_ops::script_decode),
    ("scenario_decode", script_scenario_ops::scenario_decode),
    ("sasl_exchange", sasl_ops::sasl_exchange),
    ("imap_server_ops", imap_ops::imap_server_ops),
    ("pop3_server_ops", pop3_ops::pop3_server_ops),
    ("frontend_pool_ops", frontend_ops::frontend_pool_ops),
    (
        "imap_command_to_bytes_and_back",
        codec_ops::imap_command_to_bytes_and_back,
    ),
    (
        "pop3_command_to_bytes_and_back",
        codec_ops::pop3_command_to_bytes_and_back,
    ),
    (
        "ntlm_message_to_bytes_and_back",
        codec_ops::ntlm_message_to_bytes_and_back,
    ),
    ("netfuzz_reply_check", reply_ops::netfuzz_reply_check),
    ("dcerpc_pdu_decode", dcerpc_ops::dcerpc_pdu_decode),
    (
        "dcerpc_pdu_to_bytes_and_back",
        dcerpc_ops::dcerpc_pdu_to_bytes_and_back,
    ),
    ("dcerpc_stream_framer", dcerpc_ops::dcerpc_stream_framer),
    ("ndr_decode", ndr_ops::ndr_decode),
    ("dcerpc_ntlm_unwrap", crate::dcerpc::ntlm::fuzz_unwrap),
    ("oxcrpc_lz77_decompress", oxcrpc_ops::oxcrpc_lz77_decompress),
    ("oxcrpc_ext_roundtrip", oxcrpc_ops::oxcrpc_ext_roundtrip),
    ("nspi_call", crate::dcerpc::nspi::fuzz::fuzz_call),
    ("dcerpc_server_bytes", rpc_ops::dcerpc_server_bytes),
    ("dcerpc_server_ops", rpc_ops::dcerpc_server_ops),
    ("dcerpc_client_hostile", rpc_ops::dcerpc_client_hostile),
    ("dcerpc_interface_calls", rpc_ops::dcerpc_interface_calls),
    ("emsmdb_call", emsmdb_ops::emsmdb_call),
    ("rts_pdu_decode", rts_ops::rts_pdu_decode),
    (
        "rts_pdu_to_bytes_and_back",
        rts_ops::rts_pdu_to_bytes_and_back,
    ),
    ("rpch_proxy_ops", rpch_ops::rpch_proxy_ops),
    (
        "rpc_registration_schedule",
        registration_ops::rpc_registration_schedule,
    ),
    ("krb_message_decode", kerberos_ops::krb_message_decode),
    ("kdc_bytes", kerberos_ops::kdc_bytes),
    ("kerberos_token_chain", kerberos_ops::kerberos_token_chain),
    ("spnego_decode", kerberos_ops::spnego_decode),
    ("krb_cfx_unwrap", crate::kerberos::cfx::fuzz_unwrap),
    ("web_tier_requests", web_ops::web_tier_requests),
    ("webdav_body", webdav_ops::webdav_body),
    ("gc_timeline", gc_ops::gc_timeline),
];

/// Runs the named target on one input; `false` if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(name, _)| *name == target) {
        Some((_, f)) => {
            f(data);
            true
        }
        None => false,
    }
}

/// Lab files: any text either parses and builds a world or gives a typed error.
pub fn lab_file_decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(lab) = crate::world::LabFile::parse(text) {
        let _ = lab.build();
    }
}
