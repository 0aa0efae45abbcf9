//! A read-only reader of bbolt database files, for `snapshot status` and restores: opening with the checks
//! and words of Go's bbolt 1.3.6 (etcd 3.4's), walking buckets in key order, and `Tx.Check`.
//!
//! Why not bbolt-rs: it refuses databases whose freelist is not stored (meta `freelist` =
//! PGID_NO_FREE_LIST: "not currently supported"), and etcd 3.4 writes every backend, hence
//! every snapshot, that way (NoFreelistSync). Go's bbolt rebuilds such a freelist by walking
//! the tree; so does [`Bolt::check`].
//!
//! Everything read from the file is bounds-checked; where Go's bbolt would read outside its
//! mapping or panic, this returns [`BoltError::Corrupt`].

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use oxetcd_common::go_errors::path_error as go_path_error;

/// bbolt's magic number and file format version (meta page fields).
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// The page size Go's bbolt assumes when the first meta page does not say (the OS page size).
const DEFAULT_PAGE_SIZE: u64 = 4096;
/// A page starts with a 16-byte header: id (8), flags (2), count (2), overflow (4).
const PAGE_HEADER: usize = 16;
/// Branch and leaf elements are 16 bytes each, right after the page header.
const ELEMENT: usize = 16;
/// A bucket value starts with its header: root page id (8), sequence (8).
const BUCKET_HEADER: usize = 16;
/// The meta's checksum (FNV-1a 64) covers its first 56 bytes; the checksum follows them.
const META_SUMMED: usize = 56;
const META_LEN: usize = META_SUMMED + 8;
/// The meta's freelist page id when the freelist is not stored.
const NO_FREELIST: u64 = u64::MAX;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element that is a nested bucket.
const BUCKET_LEAF: u32 = 0x01;
/// Deeper trees loop: a real database is a few levels deep.
const MAX_DEPTH: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum BoltError {
    /// The file cannot be opened as a database: Go's bbolt's error text.
    Open(String),
    /// The database is damaged where Go's bbolt would crash or panic.
    Corrupt(String),
}

impl std::fmt::Display for BoltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoltError::Open(m) => f.write_str(m),
            BoltError::Corrupt(m) => write!(f, "snapshot file is corrupt: {m}"),
        }
    }
}

impl std::error::Error for BoltError {}

type Result<T> = std::result::Result<T, BoltError>;

fn corrupt<T>(why: impl Into<String>) -> Result<T> {
    Err(BoltError::Corrupt(why.into()))
}

/// A meta page's fields that the reader needs.
#[derive(Clone, Copy, Debug)]
struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    /// The high-water mark: pages below it are in use or free.
    pgid: u64,
    txid: u64,
}

/// bbolt's `meta.validate` of the meta at the start of the page `page`, with Go's words.
fn parse_meta(page: &[u8]) -> std::result::Result<Meta, &'static str> {
    let m = page
        .get(PAGE_HEADER..PAGE_HEADER + META_LEN)
        .ok_or("invalid database")?;
    if u32_at(m, 0) != MAGIC {
        Err("invalid database")
    } else if u32_at(m, 4) != VERSION {
        Err("version mismatch")
    } else if u64_at(m, 56) != 0 && u64_at(m, 56) != fnv1a64(&m[..META_SUMMED]) {
        Err("checksum error")
    } else {
        Ok(Meta {
            page_size: u32_at(m, 8),
            root: u64_at(m, 16),
            freelist: u64_at(m, 32),
            pgid: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }
}

/// Little-endian integers at `i`; callers have checked the length.
fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn fnv1a64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One page: its header and its bytes, header included (overflow pages too).
struct Page {
    id: u64,
    flags: u16,
    count: u16,
    overflow: u32,
    data: Vec<u8>,
}

impl Page {
    /// A page whose bytes are `data` (an inline bucket's page, or one read from the file).
    fn parse(data: Vec<u8>) -> Result<Page> {
        if data.len() < PAGE_HEADER {
            return corrupt("page shorter than its header");
        }
        Ok(Page {
            id: u64_at(&data, 0),
            flags: u16::from_le_bytes([data[8], data[9]]),
            count: u16::from_le_bytes([data[10], data[11]]),
            overflow: u32_at(&data, 12),
            data,
        })
    }

    fn is_branch(&self) -> bool {
        self.flags & BRANCH_PAGE != 0
    }

    fn is_leaf(&self) -> bool {
        self.flags & LEAF_PAGE != 0
    }

    /// bbolt's `page.typ`.
    fn typ(&self) -> String {
        if self.is_branch() {
            "branch".into()
        } else if self.is_leaf() {
            "leaf".into()
        } else if self.flags & META_PAGE != 0 {
            "meta".into()
        } else if self.flags & FREELIST_PAGE != 0 {
            "freelist".into()
        } else {
            format!("unknown<{:02x}>", self.flags)
        }
    }

    /// The 16-byte element `i` and the bytes from its start on (positions count from there).
    fn element(&self, i: usize) -> Result<&[u8]> {
        let at = PAGE_HEADER + i * ELEMENT;
        match self.data.get(at..) {
            Some(rest) if rest.len() >= ELEMENT => Ok(rest),
            _ => corrupt(format!("page {}: element {i} past the page", self.id)),
        }
    }

    /// A branch page's children, in key order.
    fn children(&self) -> Result<Vec<u64>> {
        (0..usize::from(self.count))
            .map(|i| Ok(u64_at(self.element(i)?, 8)))
            .collect()
    }

    /// A leaf page's elements, in key order.
    fn entries(&self) -> Result<Vec<Entry<'_>>> {
        (0..usize::from(self.count))
            .map(|i| {
                let e = self.element(i)?;
                let (flags, pos, ksize, vsize) = (
                    u32_at(e, 0),
                    u32_at(e, 4) as usize,
                    u32_at(e, 8) as usize,
                    u32_at(e, 12) as usize,
                );
                let kv = pos
                    .checked_add(ksize)
                    .and_then(|k_end| Some((k_end, k_end.checked_add(vsize)?)))
                    .and_then(|(k_end, v_end)| Some((e.get(pos..k_end)?, e.get(k_end..v_end)?)));
                match kv {
                    Some((key, value)) => Ok(Entry { flags, key, value }),
                    None => corrupt(format!("page {}: element {i} past the page", self.id)),
                }
            })
            .collect()
    }
}

/// An element of a leaf page.
struct Entry<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

impl Entry<'_> {
    fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF != 0
    }
}

/// What walks over a bucket's leaf elements call.
type Visit<'v> = dyn FnMut(&Entry<'_>) -> Result<()> + 'v;

/// What [`Bolt::for_each`] calls: a key and its value, `None` for a nested bucket.
pub(crate) type KeyValue<'v> = dyn FnMut(&[u8], Option<&[u8]>) + 'v;

/// Where a bucket's tree is: a page of the file, or inline in its value.
pub(crate) enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

/// A bucket's value: its header, then (inline bucket) its page.
fn bucket_root(value: &[u8]) -> Result<Root> {
    if value.len() < BUCKET_HEADER {
        return corrupt("bucket value shorter than its header");
    }
    match u64_at(value, 0) {
        0 => Ok(Root::Inline(value[BUCKET_HEADER..].to_vec())),
        id => Ok(Root::Page(id)),
    }
}

/// An open database file.
pub(crate) struct Bolt {
    file: File,
    len: u64,
    page_size: u64,
    meta: Meta,
}

impl Bolt {
    /// Go's `bolt.Open(path, 0400, &bolt.Options{ReadOnly: true})`: its checks, in its order,
    /// with its messages.
    pub(crate) fn open(path: &str) -> Result<Bolt> {
        let open_err = |e: String| BoltError::Open(e);
        let md = std::fs::metadata(path).map_err(|e| open_err(go_path_error("stat", path, &e)))?;
        if md.is_dir() {
            // bolt opens with O_CREATE, which a directory refuses.
            return Err(open_err(format!("open {path}: is a directory")));
        }
        let mut file = File::open(path).map_err(|e| open_err(go_path_error("open", path, &e)))?;
        let len = md.len();
        if len == 0 {
            // bolt initialises an empty file, writing through its read-only descriptor.
            return Err(open_err(format!("write {path}: bad file descriptor")));
        }
        let mut first = vec![0u8; DEFAULT_PAGE_SIZE as usize];
        if file.read_exact(&mut first).is_err() {
            return Err(open_err("invalid database".into()));
        }
        let meta0 = parse_meta(&first);
        let page_size = meta0.map_or(DEFAULT_PAGE_SIZE, |m| u64::from(m.page_size));
        if page_size < (PAGE_HEADER + META_LEN) as u64 || len < page_size * 2 {
            return Err(open_err("file size too small".into()));
        }
        let mut second = vec![0u8; PAGE_HEADER + META_LEN];
        if file.read_exact_at(&mut second, page_size).is_err() {
            return Err(open_err("invalid database".into()));
        }
        let meta1 = parse_meta(&second);
        // bbolt's `db.meta()`: the valid meta with the higher transaction ID.
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(open_err(e.into())),
        };
        Ok(Bolt {
            file,
            len,
            page_size,
            meta,
        })
    }

    /// bbolt's `Tx.Size`: the bytes below the high-water mark.
    pub(crate) fn size(&self) -> u64 {
        self.meta.pgid.saturating_mul(self.page_size)
    }

    /// The page `id` of the file, with its overflow pages.
    fn page(&self, id: u64) -> Result<Page> {
        let beyond = || corrupt(format!("page {id}: beyond the end of the file"));
        let Some(at) = id.checked_mul(self.page_size) else {
            return beyond();
        };
        let mut header = [0u8; PAGE_HEADER];
        if self.file.read_exact_at(&mut header, at).is_err() {
            return beyond();
        }
        let overflow = u64::from(u32_at(&header, 12));
        let len = (overflow + 1) * self.page_size;
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return beyond();
        }
        let mut data = vec![0u8; len as usize];
        if self.file.read_exact_at(&mut data, at).is_err() {
            return beyond();
        }
        Page::parse(data)
    }

    fn root_page(&self, root: &Root) -> Result<Page> {
        match root {
            Root::Page(id) => self.page(*id),
            Root::Inline(b) => Page::parse(b.clone()),
        }
    }

    /// The top-level keys in order, each with its bucket's root; `None` for a key that is not
    /// a bucket (Go's `tx.Bucket` is then nil).
    pub(crate) fn buckets(&self) -> Result<Vec<(Vec<u8>, Option<Root>)>> {
        let mut out = Vec::new();
        self.for_each_raw(&Root::Page(self.meta.root), &mut |e| {
            let root = if e.is_bucket() {
                Some(bucket_root(e.value)?)
            } else {
                None
            };
            out.push((e.key.to_vec(), root));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every entry of the bucket at `root` in key order, as bbolt's
    /// `Bucket.ForEach` does: (key, value), the value `None` for a nested bucket.
    pub(crate) fn for_each(&self, root: &Root, f: &mut KeyValue<'_>) -> Result<()> {
        self.for_each_raw(root, &mut |e| {
            f(e.key, (!e.is_bucket()).then_some(e.value));
            Ok(())
        })
    }

    /// Every leaf element of the bucket at `root`, in key order.
    fn for_each_raw(&self, root: &Root, f: &mut Visit<'_>) -> Result<()> {
        self.walk(&self.root_page(root)?, 0, f)
    }

    fn walk(&self, page: &Page, depth: usize, f: &mut Visit<'_>) -> Result<()> {
        if depth > MAX_DEPTH {
            return corrupt(format!("page {}: the tree loops", page.id));
        }
        if page.is_branch() {
            for child in page.children()? {
                self.walk(&self.page(child)?, depth + 1, f)?;
            }
        } else if page.is_leaf() {
            for e in page.entries()? {
                f(&e)?;
            }
        } else {
            return corrupt(format!("page {}: invalid type: {}", page.id, page.typ()));
        }
        Ok(())
    }

    /// bbolt 1.3.6's `Tx.Check`: the problems found, in its words. With no stored freelist,
    /// bbolt first rebuilds it from the pages the tree reaches, and panics on any problem on
    /// the way (here: [`BoltError::Corrupt`]); the check itself can then find none.
    pub(crate) fn check(&self) -> Result<Vec<String>> {
        let root = Root::Page(self.meta.root);
        if self.meta.freelist == NO_FREELIST {
            let none = HashSet::new();
            let mut st = CheckState::new(&none);
            self.check_bucket(&root, &mut st, 0)?;
            return match st.errors.first() {
                Some(e) => corrupt(format!(
                    "freepages: failed to get all reachable pages ({e})"
                )),
                None => Ok(Vec::new()),
            };
        }
        let free = self.page(self.meta.freelist)?;
        if free.flags & FREELIST_PAGE == 0 {
            return corrupt(format!(
                "invalid freelist page: {}, page type is {}",
                free.id,
                free.typ()
            ));
        }
        let mut ids = self.freelist_ids(&free)?;
        ids.sort_unstable();
        let mut freed = HashSet::new();
        let mut doubly = Vec::new();
        for id in ids {
            if !freed.insert(id) {
                doubly.push(format!("page {id}: already freed"));
            }
        }
        let mut st = CheckState::new(&freed);
        st.errors = doubly;
        st.reachable.insert(0);
        st.reachable.insert(1);
        for i in 0..=u64::from(free.overflow) {
            st.reachable.insert(self.meta.freelist.wrapping_add(i));
        }
        self.check_bucket(&root, &mut st, 0)?;
        for i in 0..self.meta.pgid {
            if !st.reachable.contains(&i) && !freed.contains(&i) {
                st.errors.push(format!("page {i}: unreachable unfreed"));
            }
        }
        Ok(st.errors)
    }

    /// bbolt's `freelist.read`: the page IDs of a freelist page (a count of 0xFFFF means the
    /// real count is the first element).
    fn freelist_ids(&self, p: &Page) -> Result<Vec<u64>> {
        let (mut at, count) = if p.count == 0xFFFF {
            match p.data.get(PAGE_HEADER..PAGE_HEADER + 8) {
                Some(c) => (PAGE_HEADER + 8, u64_at(c, 0)),
                None => return corrupt("freelist page shorter than its count"),
            }
        } else {
            (PAGE_HEADER, u64::from(p.count))
        };
        let mut ids = Vec::new();
        for _ in 0..count {
            match p.data.get(at..at + 8) {
                Some(b) => ids.push(u64_at(b, 0)),
                None => return corrupt("freelist longer than its page"),
            }
            at += 8;
        }
        Ok(ids)
    }

    /// bbolt's `Tx.checkBucket`: every page of the bucket's tree, then its nested buckets.
    fn check_bucket(&self, root: &Root, st: &mut CheckState<'_>, depth: usize) -> Result<()> {
        let Root::Page(id) = root else {
            // Inline buckets have no pages of their own.
            return Ok(());
        };
        if depth > MAX_DEPTH {
            return corrupt("the bucket tree loops");
        }
        self.check_pages(*id, st, 0)?;
        let mut nested = Vec::new();
        self.for_each_raw(root, &mut |e| {
            if e.is_bucket() {
                nested.push(bucket_root(e.value)?);
            }
            Ok(())
        })?;
        for child in nested {
            self.check_bucket(&child, st, depth + 1)?;
        }
        Ok(())
    }

    /// bbolt's `forEachPage` with checkBucket's checks on each page.
    fn check_pages(&self, id: u64, st: &mut CheckState<'_>, depth: usize) -> Result<()> {
        // A page reached twice is reported (as bbolt does) and walked again; a tree that
        // keeps doing so loops, which would never end.
        st.visits += 1;
        if depth > MAX_DEPTH || st.visits > self.meta.pgid.saturating_mul(2) + 64 {
            return corrupt(format!("page {id}: the tree loops"));
        }
        let p = self.page(id)?;
        if p.id > self.meta.pgid {
            st.errors
                .push(format!("page {}: out of bounds: {}", p.id, self.meta.pgid));
        }
        for i in 0..=u64::from(p.overflow) {
            let pid = p.id.wrapping_add(i);
            if !st.reachable.insert(pid) {
                st.errors.push(format!("page {pid}: multiple references"));
            }
        }
        if st.freed.contains(&p.id) {
            st.errors.push(format!("page {}: reachable freed", p.id));
        } else if !p.is_branch() && !p.is_leaf() {
            st.errors
                .push(format!("page {}: invalid type: {}", p.id, p.typ()));
        }
        if p.is_branch() {
            for child in p.children()? {
                self.check_pages(child, st, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// What `Tx.Check` tracks while it walks.
struct CheckState<'a> {
    reachable: HashSet<u64>,
    freed: &'a HashSet<u64>,
    errors: Vec<String>,
    visits: u64,
}

impl<'a> CheckState<'a> {
    fn new(freed: &'a HashSet<u64>) -> Self {
        CheckState {
            reachable: HashSet::new(),
            freed,
            errors: Vec::new(),
            visits: 0,
        }
    }
}
