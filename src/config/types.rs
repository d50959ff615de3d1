//! Small value types shared by several configuration sections.
//! Each parses from the string form an operator writes in TOML or an environment variable.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An inclusive range of ports, written `"50000-50100"` (or a single port `"50000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port in the range.
    pub first: u16,
    /// Last port in the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range (0 when inverted).
    pub fn len(&self) -> usize {
        if self.last < self.first {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// True when the range holds no port (first > last).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the range for use as a bind range: not inverted and not including port 0.
    pub fn check(&self) -> Result<(), String> {
        if self.first == 0 {
            return Err("port 0 is not a usable port in a range".into());
        }
        if self.last < self.first {
            return Err(format!(
                "range is inverted: first port {} is above last port {}",
                self.first, self.last
            ));
        }
        Ok(())
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse =
            |p: &str| p.trim().parse::<u16>().map_err(|_| format!("`{p}` is not a port number (0-65535)"));
        match s.split_once('-') {
            Some((a, b)) => Ok(PortRange { first: parse(a)?, last: parse(b)? }),
            None => {
                let p = parse(s)?;
                Ok(PortRange { first: p, last: p })
            }
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_single_ports() {
        assert_eq!("1-2".parse::<PortRange>().unwrap(), PortRange { first: 1, last: 2 });
        assert_eq!("7".parse::<PortRange>().unwrap().len(), 1);
        assert!("70000-1".parse::<PortRange>().is_err());
        assert!("x".parse::<PortRange>().is_err());
        assert!("9-3".parse::<PortRange>().unwrap().check().is_err());
        assert!("0-3".parse::<PortRange>().unwrap().check().is_err());
    }
}
