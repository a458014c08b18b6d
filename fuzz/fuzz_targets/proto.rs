//! The control protocol decoder on any request line: never panics, errors
//! are one line, and an accepted request survives encoding and parsing
//! again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_proto::Request;

fuzz_target!(|data: &[u8]| {
    match Request::parse(data) {
        Ok(req) => {
            let line = req.to_line();
            assert!(!line.contains('\n'), "an encoded request spans lines");
            let again = Request::parse(line.as_bytes()).expect("a re-encoded request parses");
            assert_eq!(again, req, "request changed through to_line/parse");
        }
        Err(e) => assert!(!e.contains('\n'), "error is not one line: {e}"),
    }
});
