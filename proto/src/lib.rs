//! The language `rvsctl` and `rvsd` speak, as a library any client can use.
//!
//! # The control socket
//!
//! rvsd listens on a Unix stream socket (default [`DEFAULT_SOCKET`], mode
//! 0660, group set by `rvsd --group`). A connection carries any number of
//! exchanges, each one line of JSON each way, in order:
//!
//! ```text
//! -> {"version":1,"cmd":"bridge_add","bridge":"br0"}
//! <- {"version":1,"ok":true,"result":null}
//! -> {"version":1,"cmd":"fdb_show","bridge":"nope"}
//! <- {"version":1,"ok":false,"error":"unknown bridge \"nope\""}
//! ```
//!
//! - A request is a JSON object on one line (at most [`MAX_REQUEST_LEN`]
//!   bytes with its newline): `version` (a version from
//!   [`SUPPORTED_VERSIONS`], checked first, so a client of another version
//!   learns which ones rvsd speaks), `cmd` (a [`Command`] name in
//!   snake_case) and that command's arguments as fields. Unknown fields are
//!   refused.
//! - A reply ([`Reply`]) is one line (at most [`MAX_REPLY_LEN`] bytes):
//!   `ok` with the command's `result`, or `error`, a single line fit to
//!   show a user. Results are the types of [`status`], [`cluster`] and this
//!   module (`ShowResult` for `show`, and so on, as each [`Command`]
//!   variant says).
//! - rvsd refuses an over-long request and closes the connection, and drops
//!   a client that stays silent for 30 s or stops reading its replies.
//! - `capture` turns its connection into a stream of binary messages after
//!   its one-line reply: see [`capstream`]. [`pcap`] writes them as a
//!   classic pcap file.
//! - `trace` takes a frame description or hex bytes: see [`framedesc`].
//!
//! The argument rules both sides apply live in [`check`], so a client can
//! refuse bad input before sending it, and rvsd refuses the same input from
//! any client. [`config`] is the configuration model rvsd persists, and
//! [`client`] a blocking client for one request at a time.

#![warn(missing_docs)]

pub mod capstream;
pub mod check;
pub mod client;
pub mod cluster;
pub mod config;
pub mod framedesc;
pub mod ifaddr;
pub mod pcap;
pub mod pcapng;
mod request;
pub mod status;

pub use check::*;
pub use request::*;
