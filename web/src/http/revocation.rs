//! Revocation status over HTTP, where issued certificates point: `POST /ocsp` and
//! `GET /ocsp/{request}` (RFC 6960 appendix A, RFC 5019) and `GET /crl/{issuer}.crl`.
//!
//! OCSP: answers are signed ahead of time by a background thread ([`spawn_presigner`]) for
//! every valid certificate, refreshed before half their validity has passed, and served from
//! memory: a request with one CertID and no nonce (what browsers, openssl, Go and Windows send
//! by default) touches neither the key store nor the database. Any other request (a nonce,
//! several CertIDs, a certificate issued since the last round) is signed for the caller. A
//! revocation through this server signs that certificate's answers again before it returns;
//! one made elsewhere is picked up within [`REVOCATION_POLL`]. If the key store is
//! unreachable, the answers already signed are served until their nextUpdate. A CRL is
//! generated at most once per [`CRL_REFRESH`] per issuer and served from memory in between,
//! so the public endpoints cannot be used to burn CRL numbers or keep the key store busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{self, CacheControl, CacheDirective, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::error::ErrorKind;
use ca_core::issuer::Issuer;
use ca_core::issuer::IssuerId;
use ca_core::revocation::crl::{self, SignedCrl};
use ca_core::revocation::ocsp::{self, Answer, CacheKey, OcspResponder, ResponseStatus};
use ca_core::store::{Serial, Store};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// OCSP response content type.
pub const OCSP_RESPONSE: &str = "application/ocsp-response";
/// CRL content type (RFC 2585).
pub const CRL: &str = "application/pkix-crl";
/// How long a served CRL is kept before it is regenerated. A revocation through this
/// server's API drops its issuer's CRL at once; one made elsewhere (the CLI, another
/// process sharing the database) shows within this. Far under half of the shortest CRL
/// validity the config accepts (`[revocation] crl_validity`, at least an hour), so a
/// served CRL is always republished before half its validity has passed.
pub const CRL_REFRESH: Duration = Duration::from_secs(60);

/// The most answers kept: two per certificate (its SHA-1 and SHA-256 CertIDs), about 1 KiB
/// each with the responder certificate.
const OCSP_CACHE_ENTRIES: usize = 250_000;
/// OCSP answers signed live (nonces, several CertIDs, certificates not yet pre-signed) per
/// second at most; beyond it, `tryLater`. Pre-signed answers are not counted.
const LIVE_PER_SECOND: u32 = 500;
/// How often the pre-signer looks for revocations made by other processes (the CLI, another
/// Keyhold sharing the database): the bound on how long such a revocation can show `good`.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How often the pre-signer signs answers for newly issued certificates and refreshes those
/// past half their validity.
const PRESIGN_EVERY: Duration = Duration::from_secs(5);
/// After the key store fails, the pre-signer waits this long before trying again, doubling
/// up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// A signed OCSP answer kept in memory: its bytes, its validity, and which certificate.
#[derive(Debug, Clone)]
struct Cached {
    der: web::Bytes,
    validity: (SystemTime, SystemTime),
    issuer: IssuerId,
    serial: Serial,
}

impl Cached {
    /// Past half its validity: time to sign it again (RFC 5019 leaves the schedule to the
    /// responder; half keeps a relying party's cached copy comfortably fresh).
    fn due(&self, now: SystemTime) -> bool {
        let (this_update, next_update) = self.validity;
        let half = next_update.duration_since(this_update).unwrap_or_default() / 2;
        now >= this_update + half
    }
}

/// OCSP answers signed ahead of time, by the CertID they answer. The responder's hot path
/// reads this map and nothing else: neither the key store nor the database. An answer is
/// served until its nextUpdate, so when the key store is unreachable, OCSP keeps answering
/// for days from what was signed before.
#[derive(Debug, Default)]
pub struct OcspCache {
    answers: RwLock<HashMap<CacheKey, Cached>>,
    /// Live signatures in the current second: (its start, how many).
    live: Mutex<Option<(Instant, u32)>>,
}

impl OcspCache {
    /// Whether one more answer may be signed live this second (at most [`LIVE_PER_SECOND`]).
    fn live_signing_allowed(&self) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        match live.as_mut() {
            Some((start, n)) if start.elapsed() < Duration::from_secs(1) => {
                *n += 1;
                *n <= LIVE_PER_SECOND
            }
            _ => {
                *live = Some((Instant::now(), 1));
                true
            }
        }
    }

    fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Cached> {
        let answers = self.answers.read().ok()?;
        answers.get(key).filter(|c| now < c.validity.1).cloned()
    }

    /// Keeps `cached` under `key`, unless the cache is full (then the answer is signed on
    /// demand; [`OcspCache::sweep`] makes room as answers expire). Constant time: this runs
    /// on the request path for answers signed live.
    fn put(&self, key: CacheKey, cached: Cached) {
        if let Ok(mut answers) = self.answers.write()
            && (answers.len() < OCSP_CACHE_ENTRIES || answers.contains_key(&key))
        {
            answers.insert(key, cached);
        }
    }

    /// Drops answers past their nextUpdate (the pre-signer calls it each round).
    fn sweep(&self, now: SystemTime) {
        if let Ok(mut answers) = self.answers.write() {
            answers.retain(|_, c| now < c.validity.1);
        }
    }

    /// Forgets every answer about `serial`.
    fn forget(&self, serial: &Serial) {
        if let Ok(mut answers) = self.answers.write() {
            answers.retain(|_, c| &c.serial != serial);
        }
    }

    /// How many answers are held.
    pub fn len(&self) -> usize {
        self.answers.read().map(|a| a.len()).unwrap_or(0)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Certificates with an answer past half its validity, once each.
    fn due(&self, now: SystemTime) -> Vec<(IssuerId, Serial)> {
        let Ok(answers) = self.answers.read() else {
            return Vec::new();
        };
        let mut due: Vec<(IssuerId, Serial)> = answers
            .values()
            .filter(|c| c.due(now))
            .map(|c| (c.issuer.clone(), c.serial.clone()))
            .collect();
        due.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
        due.dedup();
        due
    }

    /// Signs `serial`'s answers now and keeps them, replacing any older ones. If signing
    /// fails after a revocation (`revoked`), the old answers are forgotten (they may say
    /// `good`), so requests fall through to live signing, which answers `tryLater`;
    /// otherwise they are kept and served until their nextUpdate.
    ///
    /// Fails with why signing failed.
    fn sign(
        &self,
        responder: &OcspResponder,
        issuer: &IssuerId,
        serial: &Serial,
        now: SystemTime,
        revoked: bool,
    ) -> Result<(), String> {
        match responder.presign(issuer, serial, now) {
            Ok(answers) => {
                for (key, answer) in answers {
                    if let Some(validity) = answer.validity {
                        self.put(
                            key,
                            Cached {
                                der: web::Bytes::from(answer.der),
                                validity,
                                issuer: issuer.clone(),
                                serial: serial.clone(),
                            },
                        );
                    }
                }
                Ok(())
            }
            // An issuer without a responder here: nothing to sign, nothing to fail.
            Err((ResponseStatus::Unauthorized, _)) => Ok(()),
            Err((_, why)) => {
                if revoked {
                    self.forget(serial);
                }
                Err(why)
            }
        }
    }
}

/// The pre-signer's state between rounds.
struct Presigner {
    responder: Arc<OcspResponder>,
    cache: Arc<OcspCache>,
    store: Arc<dyn Store>,
    /// Revocations at or after this were not yet seen.
    revoked_after: SystemTime,
    /// The last issued certificate signed for, as a (created_at, serial) cursor.
    issued_after: Option<(SystemTime, Serial)>,
    /// Certificates whose signing failed, to try again.
    pending: Vec<(IssuerId, Serial)>,
    /// While the key store fails: not before this, and the next wait.
    retry: Option<(Instant, Duration)>,
}

impl Presigner {
    /// Signs `work`, stopping at the first failure, which starts (or doubles) the back-off;
    /// what was not signed is kept for the next try.
    fn sign_all(&mut self, work: Vec<(IssuerId, Serial)>, now: SystemTime, revoked: bool) {
        let mut work = work.into_iter();
        for (issuer, serial) in work.by_ref() {
            if let Err(why) = self
                .cache
                .sign(&self.responder, &issuer, &serial, now, revoked)
            {
                let wait = self
                    .retry
                    .map_or(RETRY_MIN, |(_, w)| (w * 2).min(RETRY_MAX));
                tracing::warn!(%issuer, %serial, error = %why, retry_in = ?wait,
                    "cannot sign OCSP answers ahead of time; serving those already signed");
                self.retry = Some((Instant::now() + wait, wait));
                self.pending.push((issuer, serial));
                self.pending.extend(work);
                return;
            }
        }
        if self.retry.take().is_some() {
            tracing::info!("the key store signs again: OCSP answers are being refreshed");
        }
    }

    fn backing_off(&self) -> bool {
        self.retry.is_some_and(|(at, _)| Instant::now() < at)
    }

    /// Revocations made since the last look, by anyone: signed again at once (and so
    /// dropped from memory if the key store cannot sign them).
    fn revocations(&mut self) {
        let since = self.revoked_after;
        // Read from a little before the last look: a revocation committed late with an
        // earlier timestamp is still seen. Signing one twice is harmless.
        let now = SystemTime::now();
        match self.store.revoked_since(since) {
            Ok(revoked) => {
                self.revoked_after = now - REVOCATION_POLL * 5;
                for (_, serial) in &revoked {
                    self.cache.forget(serial);
                }
                if !revoked.is_empty() && !self.backing_off() {
                    self.sign_all(revoked, now, true);
                } else {
                    self.pending.extend(revoked);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read recent revocations"),
        }
    }

    /// Newly issued certificates, answers past half their validity, and earlier failures.
    fn round(&mut self) {
        if self.backing_off() {
            return;
        }
        let now = SystemTime::now();
        self.cache.sweep(now);
        let mut work = std::mem::take(&mut self.pending);
        work.extend(self.cache.due(now));
        loop {
            let filter = ca_core::store::CertFilter {
                status: Some(ca_core::store::CertStatus::Valid),
                expired: Some(false),
                sort: ca_core::store::CertSort::Oldest,
                after: self.issued_after.clone(),
                limit: 1_000,
                ..Default::default()
            };
            let rows = match self.store.certificates(&filter) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list certificates to sign OCSP answers for");
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            self.issued_after = Some((last.created_at, last.serial.clone()));
            let full = rows.len() == 1_000;
            for r in rows {
                if let Ok(issuer) = IssuerId::new(r.issuer.as_str()) {
                    work.push((issuer, r.serial));
                }
            }
            if !full || work.len() >= OCSP_CACHE_ENTRIES / 2 {
                break;
            }
        }
        if !work.is_empty() {
            self.sign_all(work, now, false);
        }
    }
}

/// Starts the thread that signs OCSP answers ahead of time: at start for every valid
/// certificate (up to the cache's size), then for each newly issued one, again for each
/// revoked one (also when revoked by another process), and again before half of an
/// answer's validity has passed. While the key store fails it backs off (1 s doubling to
/// 5 min) and the answers already signed keep being served. Stops when `stop` is set.
pub fn spawn_presigner(
    state: &AppState,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut presigner = Presigner {
        responder: state.ocsp.clone(),
        cache: state.ocsp_cache.clone(),
        store: state.ca.store().clone(),
        revoked_after: SystemTime::now(),
        issued_after: None,
        pending: Vec::new(),
        retry: None,
    };
    std::thread::Builder::new()
        .name("ocsp-presigner".into())
        .spawn(move || {
            let mut last_round: Option<Instant> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last_round.is_none_or(|t| t.elapsed() >= PRESIGN_EVERY) {
                    presigner.round();
                    last_round = Some(Instant::now());
                }
                std::thread::sleep(REVOCATION_POLL);
                presigner.revocations();
            }
        })
}

/// The latest CRL of each issuer.
#[derive(Debug)]
pub struct CrlCache {
    crls: Mutex<HashMap<String, CrlSlot>>,
    /// thisUpdate to nextUpdate of the CRLs it makes.
    validity: Duration,
}

/// One issuer's CRL: the last one signed, and whether it must be made again.
#[derive(Debug)]
struct CrlSlot {
    /// When it was made.
    made: Instant,
    crl: Arc<SignedCrl>,
    /// A revocation since: make a new one at the next fetch.
    stale: bool,
    /// While generation fails: not before this, and the next wait.
    retry: Option<(Instant, Duration)>,
}

impl CrlCache {
    /// An empty cache whose CRLs are valid for `validity`.
    pub fn new(validity: Duration) -> Self {
        CrlCache {
            crls: Mutex::default(),
            validity,
        }
    }

    /// Marks `issuer`'s CRL out of date: the next fetch generates a new one (and serves this
    /// one if that fails).
    pub fn invalidate(&self, issuer: &str) {
        if let Ok(mut crls) = self.crls.lock()
            && let Some(slot) = crls.get_mut(issuer)
        {
            slot.stale = true;
            slot.retry = None;
        }
    }

    /// What the UI shows of `issuer`'s CRL: `number, thisUpdate, nextUpdate` of the last one
    /// this server made, if any.
    pub fn status(&self, issuer: &str) -> Option<(u64, SystemTime, SystemTime)> {
        let crls = self.crls.lock().ok()?;
        crls.get(issuer)
            .map(|slot| (slot.crl.number, slot.crl.this_update, slot.crl.next_update))
    }

    /// `issuer`'s CRL, regenerated if the cached one is older than [`CRL_REFRESH`] or a
    /// revocation made it stale. Generation holds the lock, so concurrent requests wait for
    /// one CRL, not sign many. If generation fails (the key store is away, say), the last
    /// CRL is served while its nextUpdate has not passed, and generation is tried again
    /// after a back-off (1 s doubling to 5 min) rather than at every fetch.
    ///
    /// Fails if generation fails with no CRL to fall back on.
    fn get(&self, store: &dyn Store, issuer: &Issuer) -> Result<Arc<SignedCrl>, ApiError> {
        let mut crls = self.crls.lock().map_err(|_| {
            ApiError::server(ErrorKind::Internal, &"the CRL cache lock is poisoned")
        })?;
        let now = SystemTime::now();
        let id = issuer.id.as_str();
        if let Some(slot) = crls.get(id) {
            let fresh = !slot.stale && slot.made.elapsed() < CRL_REFRESH;
            let waiting = slot.retry.is_some_and(|(at, _)| Instant::now() < at);
            if (fresh || waiting) && now < slot.crl.next_update {
                return Ok(slot.crl.clone());
            }
        }
        match crl::generate(store, issuer, now, self.validity) {
            Ok(crl) => {
                let crl = Arc::new(crl);
                crls.insert(
                    id.to_owned(),
                    CrlSlot {
                        made: Instant::now(),
                        crl: crl.clone(),
                        stale: false,
                        retry: None,
                    },
                );
                Ok(crl)
            }
            Err(e) => match crls.get_mut(id) {
                Some(slot) if now < slot.crl.next_update => {
                    let wait = slot
                        .retry
                        .map_or(RETRY_MIN, |(_, w)| (w * 2).min(RETRY_MAX));
                    tracing::warn!(issuer = id, error = %e, retry_in = ?wait,
                        "cannot make a new CRL; serving the last one");
                    slot.retry = Some((Instant::now() + wait, wait));
                    Ok(slot.crl.clone())
                }
                _ => Err(ApiError::server(e.kind(), &e)),
            },
        }
    }
}

/// After a revocation through this server (API or UI): signs `serial`'s OCSP answers again
/// at once, so OCSP says `revoked` before this returns (or, if the key store cannot sign,
/// drops them, so nobody is told `good`), and drops `issuer`'s CRL so that the next fetch
/// regenerates it. Blocks on the key store: call it off the async executor.
pub fn revoked(state: &AppState, issuer: &str, serial: &Serial) {
    if let Ok(id) = IssuerId::new(issuer)
        && let Err(why) = state
            .ocsp_cache
            .sign(&state.ocsp, &id, serial, SystemTime::now(), true)
    {
        tracing::warn!(%serial, error = %why, "cannot sign the revoked answer; OCSP signs it on demand");
    }
    state.crls.invalidate(issuer);
}

/// `GET /crl/{issuer}.crl`: DER.
pub async fn crl(
    state: web::Data<AppState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let issuer = file
        .strip_suffix(".crl")
        .and_then(|id| state.ca.issuers().iter().find(|i| i.id.as_str() == id))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no CRL {:?}", file.as_str())))?;
    let (ca, cache) = (state.ca.clone(), state.crls.clone());
    let id = issuer.id.as_str().to_owned();
    let crl = web::block(move || cache.get(ca.store().as_ref(), &issuer)).await??;
    // A CRL is named by its issuer and number: the ETag. Caches may keep it until its
    // nextUpdate (RFC 5280 5.1.2.5), as the headers say.
    let etag = header::EntityTag::new_strong(format!("{id}-{}", crl.number));
    let left = crl
        .next_update
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    let cache_headers = |res: &mut actix_web::HttpResponseBuilder| {
        res.insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(u32::try_from(left).unwrap_or(u32::MAX)),
            CacheDirective::NoTransform,
        ]))
        .insert_header(header::ETag(etag.clone()))
        .insert_header(header::Expires(HttpDate::from(crl.next_update)))
        .insert_header(header::LastModified(HttpDate::from(crl.this_update)));
    };
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_string() || t.trim() == "*")
        });
    if unchanged {
        let mut res = HttpResponse::NotModified();
        cache_headers(&mut res);
        return Ok(res.finish());
    }
    let mut res = HttpResponse::Ok();
    res.content_type(CRL);
    cache_headers(&mut res);
    Ok(res.body(crl.der.clone()))
}

/// `POST /ocsp` with an `application/ocsp-request` body.
pub async fn ocsp_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.eq_ignore_ascii_case("application/ocsp-request") {
        return Err(ApiError::unsupported_media_type(
            "send the OCSP request as Content-Type: application/ocsp-request",
        ));
    }
    answer(state, body.to_vec()).await
}

/// `GET /ocsp/{base64 request}` (any other method: 405).
pub async fn ocsp_get(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if req.method() != actix_web::http::Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    // The raw path: the request's base64 may hold `/` and `+`, and may be percent-encoded.
    let tail = req.path().strip_prefix("/ocsp/").unwrap_or("");
    match ocsp::decode_get_path(tail) {
        Ok(request) => answer(state, request).await,
        // RFC 6960 2.3: a request that does not parse gets malformedRequest.
        Err(_) => Ok(HttpResponse::Ok()
            .content_type(OCSP_RESPONSE)
            .body(ocsp::error_response(ResponseStatus::MalformedRequest))),
    }
}

async fn answer(state: web::Data<AppState>, request: Vec<u8>) -> Result<HttpResponse, ApiError> {
    let key = state.ocsp.cache_key(&request);
    if let Some(cached) = key
        .as_ref()
        .and_then(|k| state.ocsp_cache.get(k, SystemTime::now()))
    {
        return Ok(respond(cached.der, Some(cached.validity), false));
    }
    // Signed live: a nonce, several CertIDs, or a certificate not signed for yet. Bounded,
    // so that a flood of such requests cannot keep the key store busy.
    if !state.ocsp_cache.live_signing_allowed() {
        return Ok(HttpResponse::Ok()
            .content_type(OCSP_RESPONSE)
            .insert_header(CacheControl(vec![CacheDirective::NoStore]))
            .body(ocsp::error_response(ResponseStatus::TryLater)));
    }
    let responder = state.ocsp.clone();
    let answer: Answer = web::block(move || responder.answer(&request, SystemTime::now())).await?;
    if let Some(problem) = &answer.problem {
        tracing::info!(request_id = %crate::http::error::request_id(), status = ?answer.status, %problem, "ocsp");
    }
    let der = web::Bytes::from(answer.der);
    // Signed on demand (a certificate issued since the pre-signer's last round, or a serial
    // we never issued): kept like a pre-signed answer, so the next request is served from
    // memory and the pre-signer refreshes it.
    if let (Some(key), Some(validity), ResponseStatus::Successful, false) =
        (key, answer.validity, answer.status, answer.nonce)
        && let Some((issuer, serial)) = state.ocsp.subject_of(&key)
    {
        state.ocsp_cache.put(
            key,
            Cached {
                der: der.clone(),
                validity,
                issuer,
                serial,
            },
        );
    }
    Ok(respond(der, answer.validity, answer.nonce))
}

/// An OCSP answer with its caching headers.
fn respond(
    der: web::Bytes,
    validity: Option<(SystemTime, SystemTime)>,
    nonce: bool,
) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.content_type(OCSP_RESPONSE);
    // RFC 5019 6: a successful response without a nonce may be cached until nextUpdate.
    match validity {
        Some((this_update, next_update)) if !nonce => {
            let left = next_update
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs();
            res.insert_header(CacheControl(vec![
                CacheDirective::MaxAge(u32::try_from(left).unwrap_or(u32::MAX)),
                CacheDirective::Public,
                CacheDirective::NoTransform,
                CacheDirective::MustRevalidate,
            ]))
            .insert_header(header::LastModified(HttpDate::from(this_update)))
            .insert_header(header::Expires(HttpDate::from(next_update)));
        }
        _ => {
            res.insert_header(CacheControl(vec![CacheDirective::NoStore]));
        }
    }
    res.body(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_signing_is_bounded_per_second() {
        let cache = OcspCache::default();
        for _ in 0..LIVE_PER_SECOND {
            assert!(cache.live_signing_allowed());
        }
        assert!(!cache.live_signing_allowed(), "one over the bound");
    }

    #[test]
    fn an_answer_is_signed_again_past_half_its_validity() {
        let this_update = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cached = Cached {
            der: web::Bytes::new(),
            validity: (this_update, this_update + Duration::from_secs(4 * 86_400)),
            issuer: IssuerId::new("issuing-ca").unwrap(),
            serial: Serial::parse("01").unwrap(),
        };
        assert!(!cached.due(this_update));
        assert!(!cached.due(this_update + Duration::from_secs(2 * 86_400 - 1)));
        assert!(cached.due(this_update + Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn held_answers_are_served_until_their_next_update_and_forgotten_by_serial() {
        let cache = OcspCache::default();
        let now = SystemTime::now();
        let key = |n: u8| CacheKey::from_cert_id_der(vec![n]);
        for (n, serial) in [(1, "01"), (2, "01"), (3, "02")] {
            cache.put(
                key(n),
                Cached {
                    der: web::Bytes::from(vec![n]),
                    validity: (now, now + Duration::from_secs(60)),
                    issuer: IssuerId::new("issuing-ca").unwrap(),
                    serial: Serial::parse(serial).unwrap(),
                },
            );
        }
        assert!(cache.get(&key(1), now).is_some());
        assert!(cache.get(&key(1), now + Duration::from_secs(61)).is_none());
        cache.forget(&Serial::parse("01").unwrap());
        assert!(cache.get(&key(1), now).is_none() && cache.get(&key(2), now).is_none());
        assert!(cache.get(&key(3), now).is_some());
        assert_eq!(cache.len(), 1);
        cache.sweep(now);
        assert_eq!(cache.len(), 1, "still valid");
        cache.sweep(now + Duration::from_secs(61));
        assert!(cache.is_empty(), "past its nextUpdate");
    }
}
