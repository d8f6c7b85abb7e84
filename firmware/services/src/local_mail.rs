//! The appliance's own mails (the alert mail to postmaster@, non-delivery reports): each is
//! queued into the spool whole, as one new message, and then delivered like mail that
//! arrived. The spool writer (1 KB) lives in this one future and is committed in place, so a
//! caller's future holds it once and not at all while it composes its text.
//!
//! Owns: nothing (a message is queued per call). Calls: `store`.

use homemx_spool::Envelope;

/// Queues `text` as a new spool message for `envelope`; whether it was committed.
pub async fn queue(envelope: &Envelope<'_>, text: &[u8]) -> bool {
    let Some(mut stores) = crate::store::open().await else {
        return false;
    };
    let Ok(mut writer) = stores.spool.begin_message(envelope, text.len() as u32).await else {
        return false;
    };
    if stores.spool.append(&mut writer, text).await.is_err() {
        stores.spool.abort(writer);
        return false;
    }
    stores.spool.commit_in_place(&mut writer).await.is_ok()
}
