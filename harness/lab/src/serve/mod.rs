//! Serving the mocks: the accept loop every listener shares, the [`Lab`](lab::Lab) handle, the stream driver that
//! runs one sans-IO session over a socket, TLS, the front-end host and the hop to its back-end, and lab files.

pub mod connection;
pub mod frontend_host;
pub mod gc;
pub mod hop;
pub mod http;
pub mod kdc;
pub mod lab;
pub mod labfile;
pub(crate) mod listener;
pub mod rpc;
pub mod rpch;
pub mod tls;
pub mod web;
pub mod webdav;
