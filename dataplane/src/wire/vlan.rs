//! 802.1Q tags.
