//! The DNS wire format (RFC 1035) of a stub resolver: building a recursive query with one
//! question, and the strict parsing of its response into an [`Answer`].

use heapless::Vec;

use crate::error::DnsError;
use crate::name::{name_is, read_name, skip_name, HostName, WireName};

/// The DNS header length.
pub const HEADER_LEN: usize = 12;
/// The longest query [`build_query`] writes: header, a 255-octet name, type and class.
pub const MAX_QUERY_LEN: usize = HEADER_LEN + crate::name::MAX_WIRE_LEN + 4;
/// How many CNAME records the parser follows from the question's name.
pub const MAX_CNAME_HOPS: usize = 8;
/// How many A records an [`Answer`] keeps.
pub const MAX_ADDRESSES: usize = 8;
/// How many MX records an [`Answer`] keeps.
pub const MAX_EXCHANGES: usize = 8;
/// How many TXT records an [`Answer`] keeps.
pub const MAX_TEXTS: usize = 4;
/// How many bytes of one TXT record (its character-strings joined) an [`Answer`] keeps.
pub const MAX_TEXT_LEN: usize = 512;
/// How many TLSA records an [`Answer`] keeps.
pub const MAX_ASSOCIATIONS: usize = 4;
/// The longest certificate association data a [`TlsaRecord`] keeps: a SHA-512 digest (matching
/// type 2). Longer data (a whole certificate or key, matching type 0) is not kept at all.
pub const MAX_ASSOCIATION_LEN: usize = 64;

const CLASS_IN: u16 = 1;
const TYPE_CNAME: u16 = 5;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;

/// The record types the firmware asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// IPv4 address (type 1).
    A,
    /// Mail exchanger (type 15).
    Mx,
    /// Text (type 16), e.g. SPF, DMARC, DKIM keys.
    Txt,
    /// Canonical name (type 5): asked for directly, the chain is not followed.
    Cname,
    /// TLS certificate association (type 52, RFC 6698), e.g. `_25._tcp.<mx-host>` for DANE.
    Tlsa,
}

impl RecordType {
    /// The type's number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Mx => 15,
            RecordType::Txt => 16,
            RecordType::Cname => TYPE_CNAME,
            RecordType::Tlsa => 52,
        }
    }
}

/// One A record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRecord {
    /// The IPv4 address.
    pub address: [u8; 4],
    /// Seconds it may be cached (the smallest TTL along the CNAME chain).
    pub ttl: u32,
}

/// One MX record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is preferred.
    pub preference: u16,
    /// The mail host, lower case without trailing dot; "" is the null MX (RFC 7505: the
    /// domain accepts no mail).
    pub exchange: HostName,
    /// Seconds it may be cached (the smallest TTL along the CNAME chain).
    pub ttl: u32,
}

/// One TXT record: its character-strings joined (as SPF, DMARC and DKIM read them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxtRecord {
    /// The joined text, at most [`MAX_TEXT_LEN`] bytes; not necessarily UTF-8.
    pub text: Vec<u8, MAX_TEXT_LEN, u16>,
    /// True if the record was longer than [`MAX_TEXT_LEN`] and `text` holds only its start.
    pub truncated: bool,
    /// Seconds it may be cached (the smallest TTL along the CNAME chain).
    pub ttl: u32,
}

/// One TLSA record (RFC 6698 2.1): the three parameter octets as published (any value: which
/// ones to believe is the caller's business) and the certificate association data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaRecord {
    /// Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// Selector: 0 the whole certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type: 0 the data itself, 1 SHA-256, 2 SHA-512.
    pub matching_type: u8,
    /// The association data when it is at most [`MAX_ASSOCIATION_LEN`] bytes; empty otherwise
    /// (see `data_length`: a prefix is never kept, so it can never be compared as if whole).
    pub data: Vec<u8, MAX_ASSOCIATION_LEN, u8>,
    /// The length of the association data as published.
    pub data_length: u16,
    /// Seconds it may be cached (the smallest TTL along the CNAME chain).
    pub ttl: u32,
}

impl TlsaRecord {
    /// Whether the association data was longer than [`MAX_ASSOCIATION_LEN`] and not kept.
    pub fn data_omitted(&self) -> bool {
        usize::from(self.data_length) != self.data.len()
    }
}

/// What a valid response says about our question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// NXDOMAIN: the name (or the end of its CNAME chain) does not exist.
    NameError,
    /// NOERROR without records of the asked type (NODATA): the name exists, the records don't.
    NoData,
    /// The A records, in the order sent.
    A {
        /// The first [`MAX_ADDRESSES`] records.
        records: Vec<AddressRecord, MAX_ADDRESSES, u8>,
        /// How many more there were.
        omitted: u16,
    },
    /// The MX records, in the order sent (not sorted by preference).
    Mx {
        /// Up to [`MAX_EXCHANGES`] records; if there were more, those with the lowest
        /// preference are kept (still in the order sent).
        records: Vec<MxRecord, MAX_EXCHANGES, u8>,
        /// How many were left out.
        omitted: u16,
    },
    /// The TXT records, in the order sent.
    Txt {
        /// The first [`MAX_TEXTS`] records.
        records: Vec<TxtRecord, MAX_TEXTS, u8>,
        /// How many more there were.
        omitted: u16,
    },
    /// The TLSA records, in the order sent.
    Tlsa {
        /// The first [`MAX_ASSOCIATIONS`] records.
        records: Vec<TlsaRecord, MAX_ASSOCIATIONS, u8>,
        /// How many more there were.
        omitted: u16,
    },
    /// The CNAME of the name asked about (only for [`RecordType::Cname`] questions).
    Cname {
        /// The canonical name, lower case without trailing dot.
        target: HostName,
        /// Seconds it may be cached.
        ttl: u32,
    },
}

/// Writes a standard query (RD set, one question of class IN, no EDNS) for `name` into `out`
/// and returns its length (at most [`MAX_QUERY_LEN`]).
///
/// `name` must be a host name (see [`crate::name::normalise`]; one trailing dot is allowed);
/// `id` should come from a good random source, and the query be sent from a random port.
pub fn build_query(id: u16, name: &str, record_type: RecordType, out: &mut [u8]) -> Result<usize, DnsError> {
    let name = WireName::from_host_name(name)?;
    let length = HEADER_LEN + name.as_bytes().len() + 1 + 4;
    let out = out.get_mut(..length).ok_or(DnsError::BufferTooSmall)?;
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    for (slot, value) in header.chunks_exact_mut(2).zip([id, FLAG_RD, 1, 0, 0, 0]) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
    let name_length = name.write(rest)?;
    let tail = rest.get_mut(name_length..).ok_or(DnsError::BufferTooSmall)?;
    tail.copy_from_slice(&[(record_type.code() >> 8) as u8, record_type.code() as u8, 0, CLASS_IN as u8]);
    Ok(length)
}

/// The fixed header fields.
struct Header {
    flags: u16,
    answers: u16,
    others: u32,
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, DnsError> {
    match bytes.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(DnsError::Malformed),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, DnsError> {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(DnsError::Malformed),
    }
}

/// Checks that `bytes` is a response to our query: the ID, QR = 1, opcode 0, and exactly our
/// question (name compared case-insensitively, type, class IN). Returns the header and the
/// offset after the question. This is the spoofing check: a datagram failing it is not ours.
fn check_response(id: u16, name: &str, record_type: RecordType, bytes: &[u8]) -> Result<(Header, usize), DnsError> {
    let question = WireName::from_host_name(name)?;
    if read_u16(bytes, 0)? != id {
        return Err(DnsError::IdMismatch);
    }
    let flags = read_u16(bytes, 2)?;
    let header = Header {
        flags,
        answers: read_u16(bytes, 6)?,
        others: u32::from(read_u16(bytes, 8)?) + u32::from(read_u16(bytes, 10)?),
    };
    if flags & FLAG_QR == 0 {
        return Err(DnsError::NotAResponse);
    }
    let opcode = (flags >> 11 & 0xF) as u8;
    if opcode != 0 {
        return Err(DnsError::UnexpectedOpcode(opcode));
    }
    if read_u16(bytes, 4)? != 1 {
        return Err(DnsError::QuestionMismatch);
    }
    let (echoed, after_name) = name_is(bytes, HEADER_LEN, &question)?;
    if !echoed
        || read_u16(bytes, after_name)? != record_type.code()
        || read_u16(bytes, after_name + 2)? != CLASS_IN
    {
        return Err(DnsError::QuestionMismatch);
    }
    Ok((header, after_name + 4))
}

/// Checks only that `bytes` answers our query (ID, QR, opcode, the question echoed): what a
/// resolver uses to drop datagrams that are not ours before believing anything in them.
pub fn matches_query(id: u16, name: &str, record_type: RecordType, bytes: &[u8]) -> Result<(), DnsError> {
    check_response(id, name, record_type, bytes).map(|_| ())
}

/// One resource record's fixed part and where its RDATA lies.
struct Record {
    /// Where the owner's name starts (compare it with [`Record::owned_by`]: the name itself is
    /// not copied, 255 octets less in every frame that holds a record).
    owner_start: usize,
    record_type: u16,
    class: u16,
    ttl: u32,
    data_start: usize,
    data_end: usize,
}

/// Reads the record at `position`; returns it and the offset after it.
fn read_record(bytes: &[u8], position: usize) -> Result<(Record, usize), DnsError> {
    let after_name = skip_name(bytes, position)?;
    let record_type = read_u16(bytes, after_name)?;
    let class = read_u16(bytes, after_name + 2)?;
    let ttl = read_u32(bytes, after_name + 4)?;
    let data_start = after_name + 10;
    let data_end = data_start + usize::from(read_u16(bytes, after_name + 8)?);
    if data_end > bytes.len() {
        return Err(DnsError::Malformed);
    }
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    Ok((Record { owner_start: position, record_type, class, ttl, data_start, data_end }, data_end))
}

impl Record {
    /// Whether the record's owner is `name` (case-insensitively).
    fn owned_by(&self, bytes: &[u8], name: &WireName) -> Result<bool, DnsError> {
        Ok(name_is(bytes, self.owner_start, name)?.0)
    }
}

/// Calls `visit` for each of the `count` records from `start`.
fn for_each_record(
    bytes: &[u8],
    start: usize,
    count: u32,
    mut visit: impl FnMut(Record) -> Result<(), DnsError>,
) -> Result<usize, DnsError> {
    let mut position = start;
    for _ in 0..count {
        let (record, next) = read_record(bytes, position)?;
        visit(record)?;
        position = next;
    }
    Ok(position)
}

/// Reads the name filling the RDATA from `start` exactly to `end`.
fn read_data_name(bytes: &[u8], start: usize, end: usize) -> Result<WireName, DnsError> {
    let (name, after) = read_name(bytes, start)?;
    if after != end {
        return Err(DnsError::Malformed);
    }
    Ok(name)
}

/// Parses the response to our query strictly.
///
/// Checks in this order: the ID, QR = 1, opcode 0, exactly our question echoed (name
/// case-insensitive, type, class IN), TC (→ [`DnsError::Truncated`]), that every section is
/// complete, then the RCODE: NXDOMAIN → [`Answer::NameError`], other non-zero codes → their
/// errors. Then follows the CNAME chain in the answer section from our name (at most
/// [`MAX_CNAME_HOPS`] links, unless CNAME itself was asked) and collects the records of the
/// asked type owned by the chain's end; none → [`Answer::NoData`]. Records owned by other names
/// or of other classes are ignored.
pub fn parse_response(id: u16, name: &str, record_type: RecordType, bytes: &[u8]) -> Result<Answer, DnsError> {
    let mut answer = Answer::NoData;
    parse_response_into(id, name, record_type, bytes, &mut answer)?;
    Ok(answer)
}

/// [`parse_response`] writing the answer into `answer` (2.1 KB) in place, so that a caller
/// keeping it in a static (the resolver's [`crate::Lookup`]) needs no copy of it on the stack.
/// On an error `answer` holds a partial answer, not to be used.
pub(crate) fn parse_response_into(id: u16, name: &str, record_type: RecordType, bytes: &[u8], answer: &mut Answer) -> Result<(), DnsError> {
    let (header, answers_start) = check_response(id, name, record_type, bytes)?;
    if header.flags & FLAG_TC != 0 {
        return Err(DnsError::Truncated);
    }
    let answers = u32::from(header.answers);
    let answers_end = for_each_record(bytes, answers_start, answers, |_| Ok(()))?;
    for_each_record(bytes, answers_end, header.others, |_| Ok(()))?;
    match (header.flags & 0xF) as u8 {
        0 => {}
        1 => return Err(DnsError::FormatError),
        2 => return Err(DnsError::ServerFailure),
        3 => {
            *answer = Answer::NameError;
            return Ok(());
        }
        4 => return Err(DnsError::NotImplemented),
        5 => return Err(DnsError::Refused),
        other => return Err(DnsError::OtherRcode(other)),
    }

    let mut owner = WireName::from_host_name(name)?;
    let mut chain_ttl = u32::MAX;
    if record_type != RecordType::Cname {
        let mut hops = 0;
        while let Some((target, ttl)) = find_cname(bytes, answers_start, answers, &owner)? {
            hops += 1;
            if hops > MAX_CNAME_HOPS {
                return Err(DnsError::CnameChainTooLong);
            }
            owner = target;
            chain_ttl = chain_ttl.min(ttl);
        }
    }

    *answer = match record_type {
        RecordType::A => Answer::A { records: Vec::new(), omitted: 0 },
        RecordType::Mx => Answer::Mx { records: Vec::new(), omitted: 0 },
        RecordType::Txt => Answer::Txt { records: Vec::new(), omitted: 0 },
        RecordType::Tlsa => Answer::Tlsa { records: Vec::new(), omitted: 0 },
        RecordType::Cname => {
            *answer = match find_cname(bytes, answers_start, answers, &owner)? {
                Some((target, ttl)) => Answer::Cname { target: target.to_host_name()?, ttl },
                None => Answer::NoData,
            };
            return Ok(());
        }
    };
    let mut found = false;
    for_each_record(bytes, answers_start, answers, |record| {
        if record.class != CLASS_IN || record.record_type != record_type.code() || !record.owned_by(bytes, &owner)? {
            return Ok(());
        }
        found = true;
        let ttl = record.ttl.min(chain_ttl);
        let data = bytes.get(record.data_start..record.data_end).ok_or(DnsError::Malformed)?;
        match &mut *answer {
            Answer::A { records, omitted } => {
                let address: [u8; 4] = data.try_into().map_err(|_| DnsError::Malformed)?;
                if records.push(AddressRecord { address, ttl }).is_err() {
                    *omitted = omitted.saturating_add(1);
                }
            }
            Answer::Mx { records, omitted } => {
                let preference = read_u16(data, 0)?;
                let exchange = read_data_name(bytes, record.data_start + 2, record.data_end)?.to_host_name()?;
                keep_lowest_preference(records, omitted, MxRecord { preference, exchange, ttl });
            }
            Answer::Txt { records, omitted } => {
                let text = join_character_strings(data, ttl)?;
                if records.push(text).is_err() {
                    *omitted = omitted.saturating_add(1);
                }
            }
            Answer::Tlsa { records, omitted } => {
                if records.push(read_association(data, ttl)?).is_err() {
                    *omitted = omitted.saturating_add(1);
                }
            }
            Answer::NameError | Answer::NoData | Answer::Cname { .. } => {}
        }
        Ok(())
    })?;
    if !found {
        *answer = Answer::NoData;
    }
    Ok(())
}

/// The target and TTL of the CNAME record owned by `owner` in the answer section, if any.
/// Two CNAME records for one name with different targets make the response malformed.
fn find_cname(bytes: &[u8], start: usize, count: u32, owner: &WireName) -> Result<Option<(WireName, u32)>, DnsError> {
    let mut found: Option<(WireName, u32)> = None;
    for_each_record(bytes, start, count, |record| {
        if record.record_type != TYPE_CNAME || record.class != CLASS_IN || !record.owned_by(bytes, owner)? {
            return Ok(());
        }
        let target = read_data_name(bytes, record.data_start, record.data_end)?;
        match &mut found {
            Some((known, ttl)) if *known == target => *ttl = (*ttl).min(record.ttl),
            Some(_) => return Err(DnsError::Malformed),
            None => found = Some((target, record.ttl)),
        }
        Ok(())
    })?;
    Ok(found)
}

/// Adds an MX record; when the list is full, the record with the highest preference (the last
/// such) makes room if the new one is preferred to it. The order sent is kept.
fn keep_lowest_preference(records: &mut Vec<MxRecord, MAX_EXCHANGES, u8>, omitted: &mut u16, record: MxRecord) {
    if records.is_full() {
        *omitted = omitted.saturating_add(1);
        let worst = records.iter().enumerate().max_by_key(|(_, kept)| kept.preference);
        match worst.map(|(index, kept)| (index, kept.preference)) {
            Some((index, preference)) if preference > record.preference => {
                records.remove(index);
            }
            _ => return,
        }
    }
    // There is room now: `push` cannot fail.
    let _ = records.push(record);
}

/// A TLSA RDATA: usage, selector, matching type and at least one octet of association data
/// (RFC 6698 2.1; shorter is malformed). Data longer than [`MAX_ASSOCIATION_LEN`] is counted,
/// not kept.
fn read_association(data: &[u8], ttl: u32) -> Result<TlsaRecord, DnsError> {
    let (&[usage, selector, matching_type], association) = data.split_first_chunk::<3>().ok_or(DnsError::Malformed)?;
    if association.is_empty() {
        return Err(DnsError::Malformed);
    }
    let data_length = u16::try_from(association.len()).map_err(|_| DnsError::Malformed)?;
    let data = Vec::from_slice(association).unwrap_or_default();
    Ok(TlsaRecord { usage, selector, matching_type, data, data_length, ttl })
}

/// A TXT RDATA: one or more character-strings (a length octet and that many bytes) filling it
/// exactly, joined.
fn join_character_strings(data: &[u8], ttl: u32) -> Result<TxtRecord, DnsError> {
    if data.is_empty() {
        return Err(DnsError::Malformed);
    }
    let mut record = TxtRecord { text: Vec::new(), truncated: false, ttl };
    let mut rest = data;
    while let Some((&length, after)) = rest.split_first() {
        let (string, tail) = after.split_at_checked(usize::from(length)).ok_or(DnsError::Malformed)?;
        let room = MAX_TEXT_LEN - record.text.len();
        let kept = string.get(..room.min(string.len())).unwrap_or(&[]);
        record.truncated |= kept.len() < string.len();
        record.text.extend_from_slice(kept).map_err(|_| DnsError::Malformed)?;
        rest = tail;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_encoder::{Encoder, ANSWER, TYPE_A, TYPE_MX, TYPE_TLSA, TYPE_TXT};
    use proptest::prelude::*;

    const ID: u16 = 0x4A17;

    fn a_records(answer: &Answer) -> std::vec::Vec<([u8; 4], u32)> {
        match answer {
            Answer::A { records, .. } => records.iter().map(|r| (r.address, r.ttl)).collect(),
            other => panic!("not A: {other:?}"),
        }
    }

    fn mx_records(answer: &Answer) -> std::vec::Vec<(u16, String, u32)> {
        match answer {
            Answer::Mx { records, .. } => {
                records.iter().map(|r| (r.preference, r.exchange.as_str().to_string(), r.ttl)).collect()
            }
            other => panic!("not MX: {other:?}"),
        }
    }

    #[test]
    fn query_bytes() {
        let mut out = [0u8; MAX_QUERY_LEN];
        let length = build_query(0xBEEF, "Example.ORG.", RecordType::Mx, &mut out).unwrap();
        assert_eq!(
            &out[..length],
            b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x0f\x00\x01"
        );
        assert_eq!(build_query(1, "example.org", RecordType::A, &mut out[..28]), Err(DnsError::BufferTooSmall));
        assert_eq!(build_query(1, "example.org", RecordType::A, &mut out[..29]), Ok(29));
        assert_eq!(build_query(1, "bad name.org", RecordType::A, &mut out), Err(DnsError::InvalidName));
        assert_eq!(build_query(1, "", RecordType::A, &mut out), Err(DnsError::InvalidName));
        let longest = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(build_query(1, &longest, RecordType::Txt, &mut out), Ok(MAX_QUERY_LEN));
    }

    #[test]
    fn a_answer_with_compression() {
        let bytes = Encoder::response(ID, 0)
            .question("host.example.org", TYPE_A)
            .a("host.example.org", 300, [192, 0, 2, 1])
            .a("HOST.example.org", 60, [192, 0, 2, 2])
            .opt()
            .finish();
        // The owners are pointers to the question.
        assert_eq!(&bytes[34..36], b"\xc0\x0c");
        let answer = parse_response(ID, "host.example.org", RecordType::A, &bytes).unwrap();
        assert_eq!(a_records(&answer), [([192, 0, 2, 1], 300), ([192, 0, 2, 2], 60)]);
    }

    #[test]
    fn uncompressed_and_mixed_case_question_is_accepted() {
        let mut encoder = Encoder::response(ID, 0);
        encoder.compress = false;
        let bytes = encoder.question("MaIl.ExAmPlE.oRg", TYPE_A).a("mail.example.org", 5, [10, 0, 0, 1]).finish();
        let answer = parse_response(ID, "mail.EXAMPLE.org.", RecordType::A, &bytes).unwrap();
        assert_eq!(a_records(&answer), [([10, 0, 0, 1], 5)]);
    }

    #[test]
    fn header_and_question_checks() {
        let good = Encoder::response(ID, 0).question("example.org", TYPE_A).a("example.org", 1, [1, 2, 3, 4]).finish();
        let parse = |bytes: &[u8]| parse_response(ID, "example.org", RecordType::A, bytes);
        assert!(parse(&good).is_ok());
        assert_eq!(parse_response(ID ^ 1, "example.org", RecordType::A, &good), Err(DnsError::IdMismatch));
        assert_eq!(parse_response(ID, "example.net", RecordType::A, &good), Err(DnsError::QuestionMismatch));
        assert_eq!(parse_response(ID, "www.example.org", RecordType::A, &good), Err(DnsError::QuestionMismatch));
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &good), Err(DnsError::QuestionMismatch));
        assert_eq!(parse_response(ID, "exa mple.org", RecordType::A, &good), Err(DnsError::InvalidName));
        let mut query = good.clone();
        query[2] &= 0x7F;
        assert_eq!(parse(&query), Err(DnsError::NotAResponse));
        let mut opcode = good.clone();
        opcode[2] |= 2 << 3;
        assert_eq!(parse(&opcode), Err(DnsError::UnexpectedOpcode(2)));
        let mut no_question = good.clone();
        no_question[5] = 0;
        assert_eq!(parse(&no_question), Err(DnsError::QuestionMismatch));
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        assert_eq!(parse(&two_questions), Err(DnsError::QuestionMismatch));
        let chaos = Encoder::response(ID, 0).raw(b"\x07example\x03org\x00\x00\x01\x00\x03").finish();
        let mut chaos = chaos;
        chaos[5] = 1;
        assert_eq!(parse(&chaos), Err(DnsError::QuestionMismatch));
        assert_eq!(parse(&good[..11]), Err(DnsError::Malformed));
        assert_eq!(parse(&[]), Err(DnsError::Malformed));
    }

    #[test]
    fn truncated_flag() {
        let bytes = Encoder::with_flags(ID, 0x8380).question("example.org", TYPE_TXT).finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Txt, &bytes), Err(DnsError::Truncated));
        // TC from someone who does not know our question is not believed.
        assert_eq!(parse_response(ID, "example.com", RecordType::Txt, &bytes), Err(DnsError::QuestionMismatch));
    }

    #[test]
    fn rcodes() {
        let table = [
            (1, Err(DnsError::FormatError)),
            (2, Err(DnsError::ServerFailure)),
            (3, Ok(Answer::NameError)),
            (4, Err(DnsError::NotImplemented)),
            (5, Err(DnsError::Refused)),
            (9, Err(DnsError::OtherRcode(9))),
        ];
        for (rcode, expected) in table {
            let bytes = Encoder::response(ID, rcode).question("example.org", TYPE_MX).soa("example.org").finish();
            assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &bytes), expected, "rcode {rcode}");
        }
    }

    #[test]
    fn nxdomain_and_nodata_are_told_apart() {
        let nxdomain = Encoder::response(ID, 3).question("nope.example.org", TYPE_A).soa("example.org").finish();
        assert_eq!(parse_response(ID, "nope.example.org", RecordType::A, &nxdomain), Ok(Answer::NameError));
        let nodata = Encoder::response(ID, 0).question("example.org", TYPE_MX).soa("example.org").finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &nodata), Ok(Answer::NoData));
        // Records of other types or owners are not an answer.
        let other = Encoder::response(ID, 0)
            .question("example.org", TYPE_MX)
            .a("example.org", 1, [1, 1, 1, 1])
            .mx("other.example", 1, 10, "mx.other.example")
            .record_of_class(ANSWER, "example.org", TYPE_MX, 3, 1, |m| {
                m.u16(10).name("chaos.example.org");
            })
            .finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &other), Ok(Answer::NoData));
        // NXDOMAIN at the end of a CNAME chain.
        let chain = Encoder::response(ID, 3)
            .question("www.example.org", TYPE_A)
            .cname("www.example.org", 60, "gone.example.net")
            .soa("example.net")
            .finish();
        assert_eq!(parse_response(ID, "www.example.org", RecordType::A, &chain), Ok(Answer::NameError));
    }

    #[test]
    fn mx_order_kept_as_sent_and_lowercased() {
        let bytes = Encoder::response(ID, 0)
            .question("example.org", TYPE_MX)
            .mx("example.org", 3600, 20, "MX2.Example.org")
            .mx("example.org", 3600, 10, "mx1.example.org")
            .mx("example.org", 3600, 10, "backup.provider.example")
            .mx("example.org", 3600, 0, ".")
            .finish();
        let answer = parse_response(ID, "example.org", RecordType::Mx, &bytes).unwrap();
        assert_eq!(
            mx_records(&answer),
            [
                (20, "mx2.example.org".into(), 3600),
                (10, "mx1.example.org".into(), 3600),
                (10, "backup.provider.example".into(), 3600),
                (0, "".into(), 3600),
            ]
        );
    }

    #[test]
    fn more_than_eight_mx_keeps_the_preferred() {
        let mut encoder = Encoder::response(ID, 0);
        encoder.question("example.org", TYPE_MX);
        let preferences = [50, 40, 30, 60, 20, 70, 10, 80, 5, 90, 45];
        for (index, preference) in preferences.iter().enumerate() {
            encoder.mx("example.org", 60, *preference, &format!("mx{index}.example.org"));
        }
        let answer = parse_response(ID, "example.org", RecordType::Mx, &encoder.finish()).unwrap();
        let kept: std::vec::Vec<u16> = mx_records(&answer).iter().map(|r| r.0).collect();
        // 5 pushed out 80, 90 was dropped, 45 pushed out 70; the sent order is kept.
        assert_eq!(kept, [50, 40, 30, 60, 20, 10, 5, 45]);
        assert!(matches!(answer, Answer::Mx { omitted: 3, .. }));
    }

    #[test]
    fn bad_mx_exchange() {
        let bytes =
            Encoder::response(ID, 0).question("example.org", TYPE_MX).mx("example.org", 1, 1, "a b.example").finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &bytes), Err(DnsError::InvalidRecord));
        // RDATA longer than the name.
        let bytes = Encoder::response(ID, 0)
            .question("example.org", TYPE_MX)
            .record(ANSWER, "example.org", TYPE_MX, 1, |m| {
                m.u16(1).name("mx.example.org").raw(b"x");
            })
            .finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &bytes), Err(DnsError::Malformed));
        // RDATA too short for the preference.
        let bytes = Encoder::response(ID, 0)
            .question("example.org", TYPE_MX)
            .record(ANSWER, "example.org", TYPE_MX, 1, |m| {
                m.raw(b"\x00");
            })
            .finish();
        assert_eq!(parse_response(ID, "example.org", RecordType::Mx, &bytes), Err(DnsError::Malformed));
    }

    #[test]
    fn a_rdata_must_be_four_bytes() {
        for data in [&b"\x01\x02\x03"[..], b"\x01\x02\x03\x04\x05"] {
            let bytes = Encoder::response(ID, 0)
                .question("example.org", TYPE_A)
                .record(ANSWER, "example.org", TYPE_A, 1, |m| {
                    m.raw(data);
                })
                .finish();
            assert_eq!(parse_response(ID, "example.org", RecordType::A, &bytes), Err(DnsError::Malformed));
        }
    }

    #[test]
    fn a_keeps_eight_and_counts_the_rest() {
        let mut encoder = Encoder::response(ID, 0);
        encoder.question("example.org", TYPE_A);
        for index in 0..11u8 {
            encoder.a("example.org", 1, [10, 0, 0, index]);
        }
        let answer = parse_response(ID, "example.org", RecordType::A, &encoder.finish()).unwrap();
        assert_eq!(a_records(&answer).len(), 8);
        assert_eq!(a_records(&answer)[7].0, [10, 0, 0, 7]);
        assert!(matches!(answer, Answer::A { omitted: 3, .. }));
    }

    #[test]
    fn txt_strings_are_joined() {
        let long = [b'k'; 255];
        let bytes = Encoder::response(ID, 0)
            .question("_dmarc.example.org", TYPE_TXT)
            .txt("_dmarc.example.org", 300, &[b"v=DMARC1; ", b"p=reject"])
            .txt("_dmarc.example.org", 300, &[b""])
            .txt("_dmarc.example.org", 300, &[&long, &long, &long])
            .finish();
        let answer = parse_response(ID, "_dmarc.example.org", RecordType::Txt, &bytes).unwrap();
        let Answer::Txt { records, omitted: 0 } = answer else { panic!("{answer:?}") };
        assert_eq!(records.len(), 3);
        assert_eq!(&records[0].text[..], b"v=DMARC1; p=reject");
        assert!(!records[0].truncated);
        assert_eq!(&records[1].text[..], b"");
        assert_eq!(records[2].text.len(), MAX_TEXT_LEN);
        assert!(records[2].truncated);
    }

    #[test]
    fn txt_rdata_must_be_strings() {
        for data in [&b""[..], b"\x05abc", b"\x02ab\x03ab"] {
            let bytes = Encoder::response(ID, 0)
                .question("example.org", TYPE_TXT)
                .record(ANSWER, "example.org", TYPE_TXT, 1, |m| {
                    m.raw(data);
                })
                .finish();
            assert_eq!(
                parse_response(ID, "example.org", RecordType::Txt, &bytes),
                Err(DnsError::Malformed),
                "{data:?}"
            );
        }
    }

    #[test]
    fn txt_keeps_four() {
        let mut encoder = Encoder::response(ID, 0);
        encoder.question("example.org", TYPE_TXT);
        for index in 0..6u8 {
            encoder.txt("example.org", 1, &[&[b'a' + index]]);
        }
        let answer = parse_response(ID, "example.org", RecordType::Txt, &encoder.finish()).unwrap();
        let Answer::Txt { records, omitted } = answer else { panic!() };
        assert_eq!((records.len(), omitted), (4, 2));
        assert_eq!(&records[3].text[..], b"d");
    }

    const DANE_NAME: &str = "_25._tcp.mx.example.org";

    #[test]
    fn tlsa_records_are_read_as_published() {
        let digest = [0xA5; 32];
        let whole_key = [0x30; 91];
        let bytes = Encoder::response(ID, 0)
            .question(DANE_NAME, TYPE_TLSA)
            .tlsa(DANE_NAME, 3600, [3, 1, 1], &digest)
            .tlsa("_25._TCP.MX.example.org.", 60, [2, 0, 2], &[0x5A; 64])
            .tlsa(DANE_NAME, 60, [3, 1, 0], &whole_key)
            .tlsa(DANE_NAME, 60, [255, 255, 255], &[1])
            .tlsa("_443._tcp.mx.example.org", 60, [3, 1, 1], &[0; 32]) // another owner: ignored
            .finish();
        let mut out = [0u8; MAX_QUERY_LEN];
        let length = build_query(ID, DANE_NAME, RecordType::Tlsa, &mut out).unwrap();
        assert_eq!(&out[length - 4..length], b"\x00\x34\x00\x01", "type 52, class IN");
        let answer = parse_response(ID, DANE_NAME, RecordType::Tlsa, &bytes).unwrap();
        let Answer::Tlsa { records, omitted: 0 } = answer else { panic!("{answer:?}") };
        assert_eq!(records.len(), 4);
        assert_eq!((records[0].usage, records[0].selector, records[0].matching_type, records[0].ttl), (3, 1, 1, 3600));
        assert_eq!(&records[0].data[..], &digest);
        assert!(!records[0].data_omitted());
        assert_eq!((records[1].usage, records[1].selector, records[1].matching_type, records[1].data.len()), (2, 0, 2, 64));
        // Oversized data (a whole key) is counted, not kept: no prefix to mistake for the whole.
        assert_eq!((records[2].data.len(), records[2].data_length), (0, 91));
        assert!(records[2].data_omitted());
        assert_eq!((records[3].usage, &records[3].data[..]), (255, &[1u8][..]));
        // NXDOMAIN and NODATA are answers.
        let nothing = Encoder::response(ID, 3).question(DANE_NAME, TYPE_TLSA).soa("example.org").finish();
        assert_eq!(parse_response(ID, DANE_NAME, RecordType::Tlsa, &nothing), Ok(Answer::NameError));
        let no_data = Encoder::response(ID, 0).question(DANE_NAME, TYPE_TLSA).a(DANE_NAME, 1, [1, 2, 3, 4]).finish();
        assert_eq!(parse_response(ID, DANE_NAME, RecordType::Tlsa, &no_data), Ok(Answer::NoData));
    }

    #[test]
    fn tlsa_keeps_four_and_counts_the_rest() {
        let mut encoder = Encoder::response(ID, 0);
        encoder.question(DANE_NAME, TYPE_TLSA);
        for index in 0..6u8 {
            encoder.tlsa(DANE_NAME, 1, [3, 1, 1], &[index; 32]);
        }
        let answer = parse_response(ID, DANE_NAME, RecordType::Tlsa, &encoder.finish()).unwrap();
        let Answer::Tlsa { records, omitted } = answer else { panic!() };
        assert_eq!((records.len(), omitted), (MAX_ASSOCIATIONS, 2));
        assert_eq!(records[3].data[0], 3);
    }

    /// A TLSA RDATA without the three parameter octets and at least one octet of data is
    /// malformed; an RDATA length that runs past the message (a record cut short) too.
    #[test]
    fn tlsa_rdata_that_is_cut_short_is_refused() {
        for data in [&b""[..], b"\x03", b"\x03\x01", b"\x03\x01\x01"] {
            let bytes = Encoder::response(ID, 0)
                .question(DANE_NAME, TYPE_TLSA)
                .record(ANSWER, DANE_NAME, TYPE_TLSA, 1, |m| {
                    m.raw(data);
                })
                .finish();
            assert_eq!(parse_response(ID, DANE_NAME, RecordType::Tlsa, &bytes), Err(DnsError::Malformed), "{data:?}");
        }
        let whole = Encoder::response(ID, 0).question(DANE_NAME, TYPE_TLSA).tlsa(DANE_NAME, 1, [3, 1, 1], &[7; 32]).finish();
        for cut in 1..=32 {
            assert_eq!(
                parse_response(ID, DANE_NAME, RecordType::Tlsa, &whole[..whole.len() - cut]),
                Err(DnsError::Malformed),
                "{cut} octets cut"
            );
        }
        // The largest RDATA a record can claim (65,535 octets) in a 512-octet message.
        let mut oversized = whole.clone();
        let length_at = whole.len() - 32 - 3 - 2;
        oversized[length_at..length_at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse_response(ID, DANE_NAME, RecordType::Tlsa, &oversized), Err(DnsError::Malformed));
    }

    #[test]
    fn cname_chain_is_followed_in_any_order() {
        let bytes = Encoder::response(ID, 0)
            .question("www.example.org", TYPE_A)
            .a("edge.cdn.example", 600, [198, 51, 100, 7])
            .cname("lb.example.net", 120, "edge.cdn.example")
            .cname("www.example.org", 3600, "lb.example.net")
            .a("www.example.org", 1, [6, 6, 6, 6]) // not at the chain's end: ignored
            .finish();
        let answer = parse_response(ID, "www.example.org", RecordType::A, &bytes).unwrap();
        assert_eq!(a_records(&answer), [([198, 51, 100, 7], 120)]);
        // Asked for the CNAME itself: no following.
        let bytes = Encoder::response(ID, 0)
            .question("www.example.org", TYPE_CNAME)
            .cname("www.example.org", 3600, "LB.example.net.")
            .finish();
        let answer = parse_response(ID, "www.example.org", RecordType::Cname, &bytes).unwrap();
        assert_eq!(answer, Answer::Cname { target: "lb.example.net".try_into().unwrap(), ttl: 3600 });
        // A chain ending without records of the type: NODATA.
        let bytes = Encoder::response(ID, 0)
            .question("www.example.org", TYPE_MX)
            .cname("www.example.org", 3600, "lb.example.net")
            .finish();
        assert_eq!(parse_response(ID, "www.example.org", RecordType::Mx, &bytes), Ok(Answer::NoData));
    }

    #[test]
    fn cname_chain_limits() {
        let chain = |links: usize| {
            let mut encoder = Encoder::response(ID, 0);
            encoder.question("n0.example", TYPE_A);
            for index in 0..links {
                encoder.cname(&format!("n{index}.example"), 60, &format!("n{}.example", index + 1));
            }
            encoder.a(&format!("n{links}.example"), 60, [1, 2, 3, 4]);
            encoder.finish()
        };
        assert!(parse_response(ID, "n0.example", RecordType::A, &chain(MAX_CNAME_HOPS)).is_ok());
        assert_eq!(
            parse_response(ID, "n0.example", RecordType::A, &chain(MAX_CNAME_HOPS + 1)),
            Err(DnsError::CnameChainTooLong)
        );
        let looped = Encoder::response(ID, 0)
            .question("a.example", TYPE_A)
            .cname("a.example", 1, "b.example")
            .cname("b.example", 1, "a.example")
            .finish();
        assert_eq!(parse_response(ID, "a.example", RecordType::A, &looped), Err(DnsError::CnameChainTooLong));
        let self_loop =
            Encoder::response(ID, 0).question("a.example", TYPE_A).cname("a.example", 1, "a.example").finish();
        assert_eq!(parse_response(ID, "a.example", RecordType::A, &self_loop), Err(DnsError::CnameChainTooLong));
        let forked = Encoder::response(ID, 0)
            .question("a.example", TYPE_A)
            .cname("a.example", 1, "b.example")
            .cname("a.example", 1, "c.example")
            .finish();
        assert_eq!(parse_response(ID, "a.example", RecordType::A, &forked), Err(DnsError::Malformed));
        let repeated = Encoder::response(ID, 0)
            .question("a.example", TYPE_A)
            .cname("a.example", 10, "b.example")
            .cname("a.example", 5, "b.example")
            .a("b.example", 60, [9, 9, 9, 9])
            .finish();
        let answer = parse_response(ID, "a.example", RecordType::A, &repeated).unwrap();
        assert_eq!(a_records(&answer), [([9, 9, 9, 9], 5)]);
    }

    #[test]
    fn compression_pointer_abuse() {
        let question = Encoder::response(ID, 0).question("example.org", TYPE_A).finish();
        let with_answer = |owner: &[u8]| {
            let mut bytes = question.clone();
            bytes[7] = 1;
            bytes.extend_from_slice(owner);
            bytes.extend_from_slice(b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04");
            bytes
        };
        let parse = |bytes: &[u8]| parse_response(ID, "example.org", RecordType::A, bytes);
        assert!(parse(&with_answer(b"\xc0\x0c")).is_ok());
        // Forward pointer (to the answer's own RDATA area), self pointer, pointer into the header.
        let at = question.len() as u8;
        assert_eq!(parse(&with_answer(&[0xC0, at + 12])), Err(DnsError::BadPointer));
        assert_eq!(parse(&with_answer(&[0xC0, at])), Err(DnsError::BadPointer));
        assert_eq!(parse(&with_answer(b"\xc0\x00")), Err(DnsError::Malformed));
        // A loop through two names: the second points back at the first's pointer.
        assert_eq!(parse(&with_answer(&[1, b'x', 0xC0, at])), Err(DnsError::BadPointer));
        // Question name compressed into the header is garbage.
        let mut bytes = question.clone();
        bytes.truncate(12);
        bytes.extend_from_slice(b"\xc0\x04\x00\x01\x00\x01");
        assert!(parse(&bytes).is_err());
    }

    #[test]
    fn incomplete_sections_are_refused() {
        let good = Encoder::response(ID, 0).question("example.org", TYPE_A).a("example.org", 1, [1, 2, 3, 4]).finish();
        for count_offset in [7, 9, 11] {
            let mut bytes = good.clone();
            bytes[count_offset] += 1;
            assert_eq!(parse_response(ID, "example.org", RecordType::A, &bytes), Err(DnsError::Malformed));
        }
        // Trailing bytes after the promised records are ignored.
        let mut bytes = good.clone();
        bytes.extend_from_slice(b"junk");
        assert!(parse_response(ID, "example.org", RecordType::A, &bytes).is_ok());
    }

    #[test]
    fn ttl_with_top_bit_is_zero_and_chain_ttl_is_the_minimum() {
        let bytes = Encoder::response(ID, 0)
            .question("example.org", TYPE_A)
            .a("example.org", 0x8000_0000, [1, 2, 3, 4])
            .a("example.org", 0x7FFF_FFFF, [1, 2, 3, 5])
            .finish();
        let answer = parse_response(ID, "example.org", RecordType::A, &bytes).unwrap();
        assert_eq!(a_records(&answer), [([1, 2, 3, 4], 0), ([1, 2, 3, 5], 0x7FFF_FFFF)]);
    }

    #[test]
    fn answer_size() {
        let size = core::mem::size_of::<Answer>();
        eprintln!(
            "Answer: {size} bytes, MxRecord: {}, TxtRecord: {}, Lookup: {}",
            core::mem::size_of::<MxRecord>(),
            core::mem::size_of::<TxtRecord>(),
            core::mem::size_of::<crate::Lookup>()
        );
        assert!(size <= 2_200, "Answer is {size} bytes");
    }

    /// A valid response with a few records of every kind, for the prefix and mutation properties.
    fn response_strategy() -> impl Strategy<Value = (RecordType, std::vec::Vec<u8>)> {
        let addresses = proptest::collection::vec(any::<[u8; 4]>(), 0..10);
        let exchanges = proptest::collection::vec((any::<u16>(), "[a-z0-9]{1,10}(\\.[a-z]{1,5}){0,2}"), 0..10);
        let texts = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6);
        (0..4usize, addresses, exchanges, texts, any::<bool>(), any::<bool>()).prop_map(
            |(kind, addresses, exchanges, texts, via_cname, compress)| {
                let (record_type, code) = [
                    (RecordType::A, TYPE_A),
                    (RecordType::Mx, TYPE_MX),
                    (RecordType::Txt, TYPE_TXT),
                    (RecordType::Tlsa, TYPE_TLSA),
                ][kind];
                let mut encoder = Encoder::response(ID, 0);
                encoder.compress = compress;
                encoder.question("q.example.org", code);
                let owner = if via_cname {
                    encoder.cname("q.example.org", 100, "target.example.net");
                    "target.example.net"
                } else {
                    "q.example.org"
                };
                match record_type {
                    RecordType::A => addresses.iter().for_each(|address| {
                        encoder.a(owner, 7, *address);
                    }),
                    RecordType::Mx => exchanges.iter().for_each(|(preference, exchange)| {
                        encoder.mx(owner, 7, *preference, exchange);
                    }),
                    RecordType::Tlsa => texts.iter().for_each(|text| {
                        encoder.tlsa(owner, 7, [3, 1, 1], &[text.as_slice(), b"!"].concat());
                    }),
                    _ => texts.iter().for_each(|text| {
                        encoder.txt(owner, 7, &[text, text]);
                    }),
                }
                encoder.soa("example.org").opt();
                (record_type, encoder.finish())
            },
        )
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), kind in 0..5usize) {
            let record_type = [RecordType::A, RecordType::Mx, RecordType::Txt, RecordType::Cname, RecordType::Tlsa][kind];
            let _ = parse_response(ID, "q.example.org", record_type, &bytes);
            let id = u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]);
            let _ = parse_response(id, "q.example.org", record_type, &bytes);
        }

        #[test]
        fn every_strict_prefix_of_a_valid_response_is_an_error((record_type, bytes) in response_strategy()) {
            prop_assert!(parse_response(ID, "q.example.org", record_type, &bytes).is_ok());
            for length in 0..bytes.len() {
                prop_assert!(parse_response(ID, "q.example.org", record_type, &bytes[..length]).is_err(), "prefix {}", length);
            }
        }

        #[test]
        fn mutated_responses_never_panic(
            (record_type, bytes) in response_strategy(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut bytes = bytes;
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            match parse_response(ID, "q.example.org", record_type, &bytes) {
                Ok(Answer::Mx { records, .. }) => {
                    for record in records {
                        prop_assert!(record.exchange.is_empty() || crate::name::is_valid_host_name(&record.exchange));
                    }
                }
                Ok(Answer::Tlsa { records, .. }) => {
                    for record in records {
                        prop_assert!(record.data_length > 0);
                        prop_assert!(record.data.is_empty() || record.data.len() == usize::from(record.data_length));
                    }
                }
                _ => {}
            }
        }

        #[test]
        fn round_trip(
            addresses in proptest::collection::vec(any::<[u8; 4]>(), 1..8),
            exchanges in proptest::collection::vec((any::<u16>(), "[a-z0-9_-]{1,20}(\\.[a-zA-Z0-9]{1,8}){1,3}"), 1..8),
            compress in any::<bool>(),
        ) {
            let mut encoder = Encoder::response(ID, 0);
            encoder.compress = compress;
            encoder.question("q.example.org", TYPE_A);
            for address in &addresses {
                encoder.a("q.example.org", 9, *address);
            }
            let answer = parse_response(ID, "q.example.org", RecordType::A, &encoder.finish()).unwrap();
            prop_assert_eq!(a_records(&answer), addresses.iter().map(|a| (*a, 9)).collect::<std::vec::Vec<_>>());

            let mut encoder = Encoder::response(ID, 0);
            encoder.compress = compress;
            encoder.question("q.example.org", TYPE_MX);
            for (preference, exchange) in &exchanges {
                encoder.mx("q.example.org", 9, *preference, exchange);
            }
            let answer = parse_response(ID, "q.example.org", RecordType::Mx, &encoder.finish()).unwrap();
            let expected: std::vec::Vec<_> =
                exchanges.iter().map(|(preference, exchange)| (*preference, exchange.to_ascii_lowercase(), 9)).collect();
            prop_assert_eq!(mx_records(&answer), expected);
        }

        #[test]
        fn built_queries_read_back(labels in proptest::collection::vec("[A-Za-z0-9_-]{1,63}", 1..5), id in any::<u16>()) {
            let name = labels.join(".");
            let mut out = [0u8; MAX_QUERY_LEN];
            match build_query(id, &name, RecordType::Txt, &mut out) {
                Ok(length) => {
                    prop_assert!(name.len() <= 253);
                    let (read, after) = crate::name::read_name(&out[..length], HEADER_LEN).unwrap();
                    let text = read.to_host_name().unwrap();
                    prop_assert_eq!(text.as_str(), name.to_ascii_lowercase());
                    prop_assert_eq!(after + 4, length);
                    prop_assert_eq!(&out[..2], &id.to_be_bytes());
                }
                Err(error) => {
                    prop_assert_eq!(error, DnsError::InvalidName);
                    prop_assert!(name.len() > 253);
                }
            }
        }
    }
}
