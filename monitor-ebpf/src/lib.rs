//! Empty library target: lets `monitor` name this crate as a build dependency so cargo rebuilds
//! the kernel programs when they change. The programs themselves are the `monitor` binary.
#![no_std]
