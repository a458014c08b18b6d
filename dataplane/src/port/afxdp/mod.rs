//! AF_XDP ports: our own loader, UMEM and rings on libc.
