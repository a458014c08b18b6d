//! The ids the packet path indexes its tables by: `u16`s underneath, so
//! they cost nothing, but each its own type, so a port cannot be passed
//! where a bridge or a VLAN is meant.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u16);

        impl $name {
            /// The id as an index into the table it names.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl From<$name> for u16 {
            fn from(id: $name) -> u16 {
                id.0
            }
        }

        impl From<$name> for u32 {
            fn from(id: $name) -> u32 {
                id.0.into()
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0.into()
            }
        }
    };
}

id! {
    /// Index of a port in `Snapshot::ports`; stable while the port exists.
    PortId
}

id! {
    /// Index of a bridge in `Snapshot::bridges`.
    BridgeId
}

id! {
    /// An 802.1Q VLAN id: 1..=4094 for a VLAN, 0 in a priority tag.
    Vid
}

impl Vid {
    /// The highest VLAN id (4095 is reserved).
    pub const MAX: Vid = Vid(4094);

    /// `v` if it names a VLAN (1..=4094).
    pub const fn new(v: u16) -> Option<Vid> {
        if v >= 1 && v <= Self::MAX.0 {
            Some(Vid(v))
        } else {
            None
        }
    }
}
