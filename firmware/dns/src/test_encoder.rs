//! Test-only DNS message encoder: builds responses by hand, with or without name compression,
//! so the parser is tested against messages it did not write itself.

use std::collections::HashMap;

/// Builds one DNS message section by section (question, answers, authority, additional).
pub struct Encoder {
    pub bytes: Vec<u8>,
    counts: [u16; 4],
    section: usize,
    /// Lower-cased name suffix → offset, for compression.
    suffixes: HashMap<String, usize>,
    pub compress: bool,
}

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_TLSA: u16 = 52;

/// Section numbers for [`Encoder::record`].
pub const ANSWER: usize = 1;
pub const AUTHORITY: usize = 2;
pub const ADDITIONAL: usize = 3;

impl Encoder {
    /// A response header: QR, RD, RA set, the given RCODE.
    pub fn response(id: u16, rcode: u8) -> Encoder {
        Encoder::with_flags(id, 0x8180 | u16::from(rcode))
    }

    pub fn with_flags(id: u16, flags: u16) -> Encoder {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        Encoder { bytes, counts: [0; 4], section: 0, suffixes: HashMap::new(), compress: true }
    }

    /// A name, compressed against the names written before if `compress` is on.
    pub fn name(&mut self, name: &str) -> &mut Self {
        let name = name.trim_end_matches('.');
        let labels: Vec<&str> = if name.is_empty() { vec![] } else { name.split('.').collect() };
        for index in 0..labels.len() {
            let suffix = labels[index..].join(".").to_ascii_lowercase();
            if self.compress {
                if let Some(&offset) = self.suffixes.get(&suffix) {
                    self.u16(0xC000 | offset as u16);
                    return self;
                }
            }
            let here = self.bytes.len();
            if here < 0x4000 {
                self.suffixes.entry(suffix).or_insert(here);
            }
            self.bytes.push(labels[index].len() as u8);
            self.bytes.extend_from_slice(labels[index].as_bytes());
        }
        self.bytes.push(0);
        self
    }

    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn question(&mut self, name: &str, record_type: u16) -> &mut Self {
        self.enter(0);
        self.name(name).u16(record_type).u16(1)
    }

    /// A record of class IN in `section`; `data` writes its RDATA.
    pub fn record(
        &mut self,
        section: usize,
        owner: &str,
        record_type: u16,
        ttl: u32,
        data: impl FnOnce(&mut Encoder),
    ) -> &mut Self {
        self.record_of_class(section, owner, record_type, 1, ttl, data)
    }

    pub fn record_of_class(
        &mut self,
        section: usize,
        owner: &str,
        record_type: u16,
        class: u16,
        ttl: u32,
        data: impl FnOnce(&mut Encoder),
    ) -> &mut Self {
        self.enter(section);
        self.name(owner).u16(record_type).u16(class).u32(ttl);
        let length_at = self.bytes.len();
        self.u16(0);
        data(self);
        let length = (self.bytes.len() - length_at - 2) as u16;
        self.bytes[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        self
    }

    pub fn a(&mut self, owner: &str, ttl: u32, address: [u8; 4]) -> &mut Self {
        self.record(ANSWER, owner, TYPE_A, ttl, |m| {
            m.raw(&address);
        })
    }

    pub fn cname(&mut self, owner: &str, ttl: u32, target: &str) -> &mut Self {
        let target = target.to_string();
        self.record(ANSWER, owner, TYPE_CNAME, ttl, move |m| {
            m.name(&target);
        })
    }

    pub fn mx(&mut self, owner: &str, ttl: u32, preference: u16, exchange: &str) -> &mut Self {
        let exchange = exchange.to_string();
        self.record(ANSWER, owner, TYPE_MX, ttl, move |m| {
            m.u16(preference).name(&exchange);
        })
    }

    pub fn txt(&mut self, owner: &str, ttl: u32, strings: &[&[u8]]) -> &mut Self {
        self.record(ANSWER, owner, TYPE_TXT, ttl, |m| {
            for string in strings {
                m.bytes.push(string.len() as u8);
                m.raw(string);
            }
        })
    }

    /// A TLSA record: usage, selector, matching type, then `data`.
    pub fn tlsa(&mut self, owner: &str, ttl: u32, parameters: [u8; 3], data: &[u8]) -> &mut Self {
        self.record(ANSWER, owner, TYPE_TLSA, ttl, |m| {
            m.raw(&parameters).raw(data);
        })
    }

    /// An SOA in the authority section, as sent with NXDOMAIN and NODATA.
    pub fn soa(&mut self, zone: &str) -> &mut Self {
        let primary = format!("ns1.{zone}");
        let mailbox = format!("hostmaster.{zone}");
        self.record(AUTHORITY, zone, TYPE_SOA, 3600, move |m| {
            m.name(&primary).name(&mailbox).u32(2026010101).u32(7200).u32(3600).u32(1209600).u32(300);
        })
    }

    /// An EDNS OPT pseudo-record in the additional section.
    pub fn opt(&mut self) -> &mut Self {
        self.record_of_class(ADDITIONAL, "", TYPE_OPT, 1232, 0, |_| {})
    }

    fn enter(&mut self, section: usize) {
        assert!(section >= self.section, "sections must be written in order");
        self.section = section;
        self.counts[section] += 1;
    }

    /// The message with its counts filled in.
    pub fn finish(&mut self) -> Vec<u8> {
        for (index, count) in self.counts.iter().enumerate() {
            self.bytes[4 + 2 * index..6 + 2 * index].copy_from_slice(&count.to_be_bytes());
        }
        self.bytes.clone()
    }
}
