//! Minimal ustar, enough for `kubectl cp`: create from the pod filesystem, extract into it.
//! Extraction also understands the PAX (`x`) and GNU long-name (`L`) extensions Go's
//! `archive/tar` may emit for long paths.

use super::fs::{normalize, Fs, Node};

const BLOCK: usize = 512;
/// Modification time written into headers (2026-01-01T00:00:00Z): fixed for determinism.
const MTIME: u64 = 1_767_225_600;

/// Archives `paths` (relative to `cwd`) into a tar stream. Member names drop the leading `/`
/// as GNU tar does; kubectl's untar strips that same prefix. Errors are tar-style messages.
pub(crate) fn create(fs: &Fs, cwd: &str, paths: &[String]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let abs = normalize(cwd, p);
        if fs.get(&abs).is_none() {
            errors.push(format!("tar: {p}: Cannot stat: No such file or directory"));
            continue;
        }
        // Names are relative to how the path was given, minus any leading slash.
        let given = p.trim_start_matches('/').trim_end_matches('/');
        for (path, node) in fs.walk(&abs) {
            let suffix = &path[abs.len()..];
            let mut name = format!("{given}{suffix}")
                .trim_start_matches('/')
                .to_owned();
            if name.is_empty() {
                name = ".".to_owned();
            }
            let res = match node {
                Node::Dir => header(&format!("{name}/"), 0, b'5', 0o755),
                Node::File(ref d) => header(&name, d.len() as u64, b'0', 0o644),
            };
            match res {
                Some(h) => out.extend_from_slice(&h),
                None => {
                    errors.push(format!(
                        "tar: {name}: file name is too long (max 255); not dumped"
                    ));
                    continue;
                }
            }
            if let Node::File(d) = node {
                out.extend_from_slice(&d);
                out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
            }
        }
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    (out, errors)
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[field.len() - 1] = 0;
}

fn header(name: &str, size: u64, typeflag: u8, mode: u32) -> Option<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, short) = if name.len() <= 100 {
        ("", name)
    } else {
        // Split at a '/' so the prefix fits 155 bytes and the rest 100.
        let cut = name
            .char_indices()
            .filter(|&(i, c)| c == '/' && i <= 155 && name.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next()?;
        (&name[..cut], &name[cut + 1..])
    };
    h[..short.len()].copy_from_slice(short.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Some(h)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = cstr(field);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Extracts an archive into `dir`. Returns the names written and tar-style error messages.
pub(crate) fn extract(fs: &mut Fs, dir: &str, data: &[u8]) -> Result<Vec<String>, String> {
    if !fs.is_dir(dir) {
        return Err(format!(
            "tar: {dir}: Cannot open: No such file or directory"
        ));
    }
    let mut written = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    while pos + BLOCK <= data.len() {
        let h = &data[pos..pos + BLOCK];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_octal(&h[124..136]).ok_or("tar: Skipping to next header")? as usize;
        let body_start = pos + BLOCK;
        let body_end = body_start
            .checked_add(size)
            .filter(|&e| e <= data.len())
            .ok_or("tar: Unexpected EOF in archive")?;
        let body = &data[body_start..body_end];
        pos = body_start + size.div_ceil(BLOCK) * BLOCK;
        let typeflag = h[156];
        let mut name = cstr(&h[..100]);
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() && &h[257..262] == b"ustar" {
            name = format!("{prefix}/{name}");
        }
        match typeflag {
            b'x' => {
                long_name = pax_path(body).or(long_name);
                continue;
            }
            b'L' => {
                long_name = Some(cstr(body));
                continue;
            }
            b'g' => continue,
            _ => {}
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        let target = normalize(dir, &name);
        let res = match typeflag {
            b'5' => fs.mkdir_p(&target),
            b'0' | 0 | b'7' => {
                let parent = match target.rfind('/') {
                    Some(0) | None => "/".to_owned(),
                    Some(i) => target[..i].to_owned(),
                };
                fs.mkdir_p(&parent)
                    .and_then(|()| fs.write(&target, body.to_vec(), false))
            }
            // Links and devices have no meaning here; skip them like a permissive tar.
            _ => Ok(()),
        };
        if let Err(e) = res {
            return Err(format!("tar: {name}: Cannot open: {}", e.message()));
        }
        written.push(name);
    }
    Ok(written)
}

fn pax_path(body: &[u8]) -> Option<String> {
    // Records are "<len> key=value\n".
    let text = String::from_utf8_lossy(body);
    text.lines().find_map(|rec| {
        let (_, kv) = rec.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_extract_round_trips() {
        let mut fs = Fs::seeded("shop", "web", "web");
        fs.mkdir_p("/tmp/dir/sub").unwrap();
        fs.write("/tmp/dir/a.txt", b"hello".to_vec(), false)
            .unwrap();
        fs.write("/tmp/dir/sub/b.txt", vec![7u8; 1000], false)
            .unwrap();
        let (tar, errs) = create(&fs, "/", &["/tmp/dir".to_owned()]);
        assert!(errs.is_empty());
        assert_eq!(tar.len() % BLOCK, 0);
        let mut other = Fs::seeded("x", "y", "y");
        let names = extract(&mut other, "/root", &tar).unwrap();
        assert_eq!(
            names,
            vec![
                "tmp/dir/",
                "tmp/dir/a.txt",
                "tmp/dir/sub/",
                "tmp/dir/sub/b.txt"
            ]
        );
        assert_eq!(other.read("/root/tmp/dir/a.txt").unwrap(), b"hello");
        assert_eq!(
            other.read("/root/tmp/dir/sub/b.txt").unwrap(),
            &[7u8; 1000][..]
        );
    }

    #[test]
    fn header_checksum_is_valid() {
        let h = header("a.txt", 5, b'0', 0o644).unwrap();
        let stored = parse_octal(&h[148..156]).unwrap() as u32;
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
    }

    #[test]
    fn missing_paths_and_truncated_archives_fail() {
        let fs = Fs::seeded("shop", "web", "web");
        let (_, errs) = create(&fs, "/", &["/nope".to_owned()]);
        assert_eq!(
            errs,
            vec!["tar: /nope: Cannot stat: No such file or directory"]
        );
        let mut fs = fs;
        let h = header("a", 100, b'0', 0o644).unwrap();
        assert!(extract(&mut fs, "/tmp", &h).is_err());
    }
}
