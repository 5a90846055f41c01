//! A tiny busybox-like shell: enough for the commands agents and kubectl run in containers.
//!
//! Supported syntax: words with `'single'`, `"double"` and backslash quoting, `$VAR`,
//! `${VAR}` and `$?` expansion, `;`, newlines, `&&`, `||`, pipes (run one after the other,
//! the left side's output buffered), redirects `>`, `>>`, `<`, `2>`, `2>>`, `2>&1`, and `#`
//! comments. No globbing, no assignments, no control flow.

use super::fs::{normalize, Fs, Node};
use super::io::{Sink, Stdin};
use super::tar;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A command's stdio, borrowed so pipes and redirects can swap pieces.
pub(crate) struct Io<'a> {
    pub(crate) stdin: &'a mut Stdin,
    pub(crate) stdout: &'a mut Sink,
    pub(crate) stderr: &'a mut Sink,
}

/// Shell state for one exec session.
pub(crate) struct Shell {
    env: Vec<(String, String)>,
    cwd: String,
    fs: Arc<Mutex<Fs>>,
    hostname: String,
    last: i32,
    /// Set by `exit`: unwinds every nested list.
    exited: Option<i32>,
}

// --- parsing ---

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

type Word = Vec<Part>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word),
    Semi,
    And,
    Or,
    Pipe,
    Out,
    Append,
    In,
    ErrOut,
    ErrAppend,
    ErrToOut,
}

#[derive(Debug, Default)]
struct Command {
    words: Vec<Word>,
    redirects: Vec<(Tok, Word)>,
    err_to_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Always,
    And,
    Or,
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut word: Word = Vec::new();
    let mut in_word = false;
    let push_lit = |word: &mut Word, c: char| match word.last_mut() {
        Some(Part::Lit(s)) => s.push(c),
        _ => word.push(Part::Lit(c.to_string())),
    };
    macro_rules! end_word {
        () => {
            if in_word {
                toks.push(Tok::Word(std::mem::take(&mut word)));
                in_word = false;
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' | '&' => {
                end_word!();
                if c == '&' && next == Some('&') {
                    toks.push(Tok::And);
                    i += 2;
                } else {
                    // A lone '&' (background) runs in the foreground here.
                    toks.push(Tok::Semi);
                    i += 1;
                }
            }
            '|' => {
                end_word!();
                if next == Some('|') {
                    toks.push(Tok::Or);
                    i += 2;
                } else {
                    toks.push(Tok::Pipe);
                    i += 1;
                }
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '2' if !in_word && next == Some('>') => {
                if chars.get(i + 2) == Some(&'&') && chars.get(i + 3) == Some(&'1') {
                    toks.push(Tok::ErrToOut);
                    i += 4;
                } else if chars.get(i + 2) == Some(&'>') {
                    toks.push(Tok::ErrAppend);
                    i += 3;
                } else {
                    toks.push(Tok::ErrOut);
                    i += 2;
                }
            }
            '>' => {
                end_word!();
                if next == Some('>') {
                    toks.push(Tok::Append);
                    i += 2;
                } else if next == Some('&') && chars.get(i + 2) == Some(&'2') {
                    // `>&2`: treat as stderr redirect of stdout; rarely matters, keep simple.
                    toks.push(Tok::ErrToOut);
                    i += 3;
                } else {
                    toks.push(Tok::Out);
                    i += 1;
                }
            }
            '<' => {
                end_word!();
                toks.push(Tok::In);
                i += 1;
            }
            '\'' => {
                in_word = true;
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("unterminated quoted string")?;
                let s: String = chars[start..start + end].iter().collect();
                word.push(Part::Lit(s));
                i = start + end + 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                // Ensure an empty "" still makes a word.
                word.push(Part::Lit(String::new()));
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            push_lit(&mut word, chars[i + 1]);
                            i += 2;
                        }
                        '$' => i = var(&chars, i, &mut word),
                        c => {
                            push_lit(&mut word, c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = next {
                    if n != '\n' {
                        push_lit(&mut word, n);
                    }
                }
                i += 2;
            }
            '$' => {
                in_word = true;
                i = var(&chars, i, &mut word);
            }
            c => {
                in_word = true;
                push_lit(&mut word, c);
                i += 1;
            }
        }
    }
    if in_word {
        toks.push(Tok::Word(word));
    }
    Ok(toks)
}

/// Parses `$NAME`, `${NAME}` or `$?` at `chars[i] == '$'`; returns the index after it.
fn var(chars: &[char], i: usize, word: &mut Word) -> usize {
    let mut j = i + 1;
    match chars.get(j) {
        Some('{') => {
            let start = j + 1;
            if let Some(len) = chars[start..].iter().position(|&c| c == '}') {
                word.push(Part::Var(chars[start..start + len].iter().collect()));
                return start + len + 1;
            }
        }
        Some('?') => {
            word.push(Part::Var("?".into()));
            return j + 1;
        }
        Some(c) if c.is_ascii_alphanumeric() || *c == '_' => {
            while chars
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                j += 1;
            }
            word.push(Part::Var(chars[i + 1..j].iter().collect()));
            return j;
        }
        _ => {}
    }
    match word.last_mut() {
        Some(Part::Lit(s)) => s.push('$'),
        _ => word.push(Part::Lit("$".into())),
    }
    i + 1
}

fn parse(src: &str) -> Result<Vec<(Conn, Vec<Command>)>, String> {
    let mut list = Vec::new();
    let mut conn = Conn::Always;
    let mut pipeline: Vec<Command> = Vec::new();
    let mut cmd = Command::default();
    let mut toks = tokenize(src)?.into_iter().peekable();
    while let Some(t) = toks.next() {
        match t {
            Tok::Word(w) => cmd.words.push(w),
            Tok::ErrToOut => cmd.err_to_out = true,
            Tok::Out | Tok::Append | Tok::In | Tok::ErrOut | Tok::ErrAppend => match toks.next() {
                Some(Tok::Word(w)) => cmd.redirects.push((t, w)),
                _ => return Err("syntax error: unexpected redirection".into()),
            },
            Tok::Pipe => {
                if cmd.words.is_empty() {
                    return Err("syntax error: unexpected \"|\"".into());
                }
                pipeline.push(std::mem::take(&mut cmd));
            }
            Tok::Semi | Tok::And | Tok::Or => {
                if !cmd.words.is_empty() {
                    pipeline.push(std::mem::take(&mut cmd));
                } else if t != Tok::Semi || !pipeline.is_empty() {
                    let op = if t == Tok::Or { "||" } else { "&&" };
                    return Err(format!("syntax error: unexpected \"{op}\""));
                }
                if !pipeline.is_empty() {
                    list.push((conn, std::mem::take(&mut pipeline)));
                }
                conn = match t {
                    Tok::And => Conn::And,
                    Tok::Or => Conn::Or,
                    _ => Conn::Always,
                };
            }
        }
    }
    if !cmd.words.is_empty() {
        pipeline.push(cmd);
    }
    if !pipeline.is_empty() {
        list.push((conn, pipeline));
    } else if conn != Conn::Always {
        return Err("syntax error: unexpected end of file".into());
    }
    Ok(list)
}

// --- execution ---

impl Shell {
    pub(crate) fn new(env: Vec<(String, String)>, fs: Arc<Mutex<Fs>>, hostname: String) -> Self {
        Self {
            env,
            cwd: "/".into(),
            fs,
            hostname,
            last: 0,
            exited: None,
        }
    }

    fn fs(&self) -> MutexGuard<'_, Fs> {
        match self.fs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn getenv(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn expand(&self, w: &Word) -> String {
        w.iter()
            .map(|p| match p {
                Part::Lit(s) => s.clone(),
                Part::Var(v) if v == "?" => self.last.to_string(),
                Part::Var(v) => self.getenv(v).unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Runs an argv as the container's entrypoint would (no shell parsing of argv itself).
    pub(crate) async fn exec(&mut self, argv: &[String], io: &mut Io<'_>) -> i32 {
        let code = self.run_argv(argv.to_vec(), io).await;
        self.exited.unwrap_or(code)
    }

    /// Runs a script; returns its exit status.
    pub(crate) fn run_script<'a>(
        &'a mut self,
        src: &'a str,
        io: &'a mut Io<'_>,
    ) -> BoxFut<'a, i32> {
        Box::pin(async move {
            let list = match parse(src) {
                Ok(l) => l,
                Err(e) => {
                    io.stderr.write(format!("sh: {e}\n").as_bytes()).await;
                    self.last = 2;
                    return 2;
                }
            };
            for (conn, pipeline) in list {
                let skip = match conn {
                    Conn::Always => false,
                    Conn::And => self.last != 0,
                    Conn::Or => self.last == 0,
                };
                if skip {
                    continue;
                }
                self.last = self.run_pipeline(pipeline, io).await;
                if let Some(code) = self.exited {
                    return code;
                }
            }
            self.last
        })
    }

    async fn run_pipeline(&mut self, cmds: Vec<Command>, io: &mut Io<'_>) -> i32 {
        let n = cmds.len();
        let mut carried: Option<Bytes> = None;
        let mut code = 0;
        for (i, cmd) in cmds.into_iter().enumerate() {
            let mut piped_in = carried.take().map(Stdin::Buf);
            let mut piped_out = (i + 1 < n).then(|| Sink::Buf(Vec::new()));
            let mut sub = Io {
                stdin: match piped_in.as_mut() {
                    Some(s) => s,
                    None => &mut *io.stdin,
                },
                stdout: match piped_out.as_mut() {
                    Some(s) => s,
                    None => &mut *io.stdout,
                },
                stderr: &mut *io.stderr,
            };
            code = self.run_command(cmd, &mut sub).await;
            if let Some(Sink::Buf(v)) = piped_out {
                carried = Some(Bytes::from(v));
            }
            if self.exited.is_some() {
                break;
            }
        }
        code
    }

    async fn run_command(&mut self, cmd: Command, io: &mut Io<'_>) -> i32 {
        let argv: Vec<String> = cmd.words.iter().map(|w| self.expand(w)).collect();
        let mut stdin_redirect: Option<Stdin> = None;
        let mut out_file: Option<(String, bool)> = None;
        let mut err_file: Option<(String, bool)> = None;
        for (op, w) in &cmd.redirects {
            let target = self.expand(w);
            match op {
                Tok::In => {
                    let path = normalize(&self.cwd, &target);
                    let read = self.fs().read(&path).map(|d| d.to_vec());
                    match read {
                        Ok(d) => stdin_redirect = Some(Stdin::Buf(Bytes::from(d))),
                        Err(e) => {
                            io.stderr
                                .write(
                                    format!("sh: can't open '{target}': {}\n", e.message())
                                        .as_bytes(),
                                )
                                .await;
                            return 1;
                        }
                    }
                }
                Tok::Out | Tok::Append => out_file = Some((target, *op == Tok::Append)),
                _ => err_file = Some((target, *op == Tok::ErrAppend)),
            }
        }
        let mut out_buf = out_file.as_ref().map(|(p, _)| {
            if p == "/dev/null" {
                Sink::Null
            } else {
                Sink::Buf(Vec::new())
            }
        });
        let mut err_buf = err_file.as_ref().map(|(p, _)| {
            if p == "/dev/null" {
                Sink::Null
            } else {
                Sink::Buf(Vec::new())
            }
        });
        let code = {
            let stdout: &mut Sink = match out_buf.as_mut() {
                Some(s) => s,
                None => &mut *io.stdout,
            };
            if cmd.err_to_out {
                // `2>&1`: both streams into one sink; run with a temporary stderr buffer that
                // is flushed into stdout afterwards (ordering within one command is lost).
                let mut tmp = Sink::Buf(Vec::new());
                let mut sub = Io {
                    stdin: match stdin_redirect.as_mut() {
                        Some(s) => s,
                        None => &mut *io.stdin,
                    },
                    stdout: &mut *stdout,
                    stderr: &mut tmp,
                };
                let code = self.run_argv(argv, &mut sub).await;
                if let Sink::Buf(v) = tmp {
                    stdout.write(&v).await;
                }
                code
            } else {
                let mut sub = Io {
                    stdin: match stdin_redirect.as_mut() {
                        Some(s) => s,
                        None => &mut *io.stdin,
                    },
                    stdout,
                    stderr: match err_buf.as_mut() {
                        Some(s) => s,
                        None => &mut *io.stderr,
                    },
                };
                self.run_argv(argv, &mut sub).await
            }
        };
        for (file, sink) in [(out_file, out_buf), (err_file, err_buf)] {
            if let (Some((path, append)), Some(Sink::Buf(data))) = (file, sink) {
                let abs = normalize(&self.cwd, &path);
                let res = self.fs().write(&abs, data, append);
                if let Err(e) = res {
                    io.stderr
                        .write(format!("sh: can't create {path}: {}\n", e.message()).as_bytes())
                        .await;
                    return 1;
                }
            }
        }
        code
    }

    fn run_argv<'a>(&'a mut self, argv: Vec<String>, io: &'a mut Io<'_>) -> BoxFut<'a, i32> {
        Box::pin(async move {
            let Some(name) = argv.first().cloned() else {
                return 0;
            };
            let args = &argv[1..];
            let base = name.rsplit('/').next().unwrap_or(&name).to_owned();
            match base.as_str() {
                "echo" => echo(args, io).await,
                "printf" => printf(args, io).await,
                "true" | ":" => 0,
                "false" => 1,
                "pwd" => {
                    let cwd = format!("{}\n", self.cwd);
                    io.stdout.write(cwd.as_bytes()).await;
                    0
                }
                "hostname" => {
                    let h = format!("{}\n", self.hostname);
                    io.stdout.write(h.as_bytes()).await;
                    0
                }
                "whoami" => {
                    io.stdout.write(b"root\n").await;
                    0
                }
                "id" => {
                    io.stdout
                        .write(b"uid=0(root) gid=0(root) groups=0(root)\n")
                        .await;
                    0
                }
                "uname" => {
                    let s = if args.iter().any(|a| a == "-a") {
                        format!("Linux {} 6.6.0-sim #1 SMP x86_64 Linux\n", self.hostname)
                    } else {
                        "Linux\n".to_owned()
                    };
                    io.stdout.write(s.as_bytes()).await;
                    0
                }
                "env" | "printenv" => self.env_cmd(&base, args, io).await,
                "cd" => {
                    let target = args.first().map(String::as_str).unwrap_or("/root");
                    let abs = normalize(&self.cwd, target);
                    if self.fs().is_dir(&abs) {
                        self.cwd = abs;
                        0
                    } else {
                        io.stderr
                            .write(
                                format!(
                                    "sh: cd: can't cd to {target}: No such file or directory\n"
                                )
                                .as_bytes(),
                            )
                            .await;
                        2
                    }
                }
                "sleep" => {
                    let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0.0);
                    // Cap so a stray `sleep infinity`-like value cannot pin a task for days.
                    tokio::time::sleep(Duration::from_secs_f64(secs.clamp(0.0, 3600.0))).await;
                    0
                }
                "exit" => {
                    let code = match args.first() {
                        Some(a) => a.parse::<i64>().map(|c| (c & 0xff) as i32).unwrap_or(2),
                        None => self.last,
                    };
                    self.exited = Some(code);
                    code
                }
                "cat" => self.cat(args, io).await,
                "ls" => self.ls(args, io).await,
                "mkdir" => self.mkdir(args, io).await,
                "rm" => self.rm(args, io).await,
                "touch" => {
                    for a in args {
                        let abs = normalize(&self.cwd, a);
                        let exists = self.fs().get(&abs).is_some();
                        if !exists {
                            let res = self.fs().write(&abs, Vec::new(), false);
                            if let Err(e) = res {
                                io.stderr
                                    .write(format!("touch: {a}: {}\n", e.message()).as_bytes())
                                    .await;
                                return 1;
                            }
                        }
                    }
                    0
                }
                "head" | "wc" | "grep" => self.filter(&base, args, io).await,
                "tar" => self.tar(args, io).await,
                "sh" | "bash" | "ash" => self.sh(args, io).await,
                _ => {
                    io.stderr
                        .write(format!("sh: {name}: not found\n").as_bytes())
                        .await;
                    127
                }
            }
        })
    }

    async fn env_cmd(&mut self, base: &str, args: &[String], io: &mut Io<'_>) -> i32 {
        if base == "printenv" && !args.is_empty() {
            let mut code = 0;
            for a in args {
                match self.getenv(a).map(str::to_owned) {
                    Some(v) => io.stdout.write(format!("{v}\n").as_bytes()).await,
                    None => code = 1,
                }
            }
            return code;
        }
        if base == "env" && !args.is_empty() {
            // `env CMD ARGS`: run with the same environment.
            return self.run_argv(args.to_vec(), io).await;
        }
        let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        io.stdout.write(text.as_bytes()).await;
        0
    }

    async fn cat(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        let files: Vec<&String> = args
            .iter()
            .filter(|a| !a.starts_with('-') || *a == "-")
            .collect();
        if files.is_empty() {
            while let Some(c) = io.stdin.chunk().await {
                io.stdout.write(&c).await;
            }
            return 0;
        }
        let mut code = 0;
        for f in files {
            if f == "-" {
                while let Some(c) = io.stdin.chunk().await {
                    io.stdout.write(&c).await;
                }
                continue;
            }
            let abs = normalize(&self.cwd, f);
            let data = self.fs().read(&abs).map(|d| d.to_vec());
            match data {
                Ok(d) => io.stdout.write(&d).await,
                Err(e) => {
                    io.stderr
                        .write(format!("cat: can't open '{f}': {}\n", e.message()).as_bytes())
                        .await;
                    code = 1;
                }
            }
        }
        code
    }

    async fn ls(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        let long = args.iter().any(|a| a.starts_with('-') && a.contains('l'));
        let all = args.iter().any(|a| a.starts_with('-') && a.contains('a'));
        let mut paths: Vec<&str> = args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .map(String::as_str)
            .collect();
        if paths.is_empty() {
            paths.push(".");
        }
        let mut code = 0;
        let many = paths.len() > 1;
        let mut out = String::new();
        let mut err = String::new();
        {
            let fs = self.fs();
            let fmt = |name: &str, node: Option<&Node>| -> String {
                if !long {
                    return format!("{name}\n");
                }
                match node {
                    Some(Node::File(d)) => {
                        format!(
                            "-rw-r--r--    1 root     root     {:>8} Jan  1 00:00 {name}\n",
                            d.len()
                        )
                    }
                    _ => {
                        format!("drwxr-xr-x    2 root     root         4096 Jan  1 00:00 {name}\n")
                    }
                }
            };
            for (i, p) in paths.iter().enumerate() {
                let abs = normalize(&self.cwd, p);
                match fs.get(&abs) {
                    None => {
                        err.push_str(&format!("ls: {p}: No such file or directory\n"));
                        code = 1;
                    }
                    Some(Node::File(_)) => out.push_str(&fmt(p, fs.get(&abs))),
                    Some(Node::Dir) => {
                        if many {
                            if i > 0 {
                                out.push('\n');
                            }
                            out.push_str(&format!("{p}:\n"));
                        }
                        if all {
                            out.push_str(&fmt(".", Some(&Node::Dir)));
                            out.push_str(&fmt("..", Some(&Node::Dir)));
                        }
                        for name in fs.list(&abs).unwrap_or_default() {
                            if name.starts_with('.') && !all {
                                continue;
                            }
                            let child = normalize(&abs, &name);
                            out.push_str(&fmt(&name, fs.get(&child)));
                        }
                    }
                }
            }
        }
        io.stdout.write(out.as_bytes()).await;
        io.stderr.write(err.as_bytes()).await;
        code
    }

    async fn mkdir(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        let parents = args.iter().any(|a| a == "-p");
        for a in args.iter().filter(|a| !a.starts_with('-')) {
            let abs = normalize(&self.cwd, a);
            let res = {
                let mut fs = self.fs();
                if !parents && fs.get(&abs).is_some() {
                    Err("File exists")
                } else {
                    fs.mkdir_p(&abs).map_err(|e| e.message())
                }
            };
            if let Err(m) = res {
                io.stderr
                    .write(format!("mkdir: can't create directory '{a}': {m}\n").as_bytes())
                    .await;
                return 1;
            }
        }
        0
    }

    async fn rm(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        let flags: String = args
            .iter()
            .filter(|a| a.starts_with('-'))
            .map(|a| &a[1..])
            .collect();
        let (recursive, force) = (
            flags.contains('r') || flags.contains('R'),
            flags.contains('f'),
        );
        let mut code = 0;
        for a in args.iter().filter(|a| !a.starts_with('-')) {
            let abs = normalize(&self.cwd, a);
            let res = self.fs().remove(&abs, recursive);
            match res {
                Ok(()) => {}
                Err(super::fs::FsError::NotFound) if force => {}
                Err(e) => {
                    io.stderr
                        .write(format!("rm: can't remove '{a}': {}\n", e.message()).as_bytes())
                        .await;
                    code = 1;
                }
            }
        }
        code
    }

    /// `head -n N`, `wc -l|-c`, `grep [-v] PATTERN` over files or stdin.
    async fn filter(&mut self, base: &str, args: &[String], io: &mut Io<'_>) -> i32 {
        let mut opts = Vec::new();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-n" {
                opts.push(format!("-n{}", it.next().cloned().unwrap_or_default()));
            } else if a.starts_with('-') && a.len() > 1 {
                opts.push(a.clone());
            } else {
                rest.push(a.clone());
            }
        }
        let pattern = if base == "grep" {
            if rest.is_empty() {
                io.stderr
                    .write(b"Usage: grep [-v] PATTERN [FILE]...\n")
                    .await;
                return 2;
            }
            Some(rest.remove(0))
        } else {
            None
        };
        let input = if rest.is_empty() {
            io.stdin.all().await
        } else {
            let mut v = Vec::new();
            for f in &rest {
                let abs = normalize(&self.cwd, f);
                let r = self.fs().read(&abs).map(|d| d.to_vec());
                match r {
                    Ok(d) => v.extend_from_slice(&d),
                    Err(e) => {
                        io.stderr
                            .write(format!("{base}: {f}: {}\n", e.message()).as_bytes())
                            .await;
                        return 1;
                    }
                }
            }
            v
        };
        let text = String::from_utf8_lossy(&input);
        match base {
            "head" => {
                let n: usize = opts
                    .iter()
                    .find_map(|o| {
                        o.strip_prefix("-n")
                            .or_else(|| o.strip_prefix('-'))
                            .and_then(|n| n.parse().ok())
                    })
                    .unwrap_or(10);
                let out: String = text.split_inclusive('\n').take(n).collect();
                io.stdout.write(out.as_bytes()).await;
                0
            }
            "wc" => {
                let out = if opts.iter().any(|o| o == "-c") {
                    input.len()
                } else {
                    text.matches('\n').count()
                };
                io.stdout.write(format!("{out}\n").as_bytes()).await;
                0
            }
            _ => {
                let invert = opts.iter().any(|o| o == "-v");
                let pat = pattern.unwrap_or_default();
                let out: String = text
                    .split_inclusive('\n')
                    .filter(|l| l.contains(pat.as_str()) != invert)
                    .collect();
                io.stdout.write(out.as_bytes()).await;
                i32::from(out.is_empty())
            }
        }
    }

    async fn tar(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        // Options as kubectl uses them: `cf - PATH...` and
        // `[--no-same-permissions --no-same-owner] -xmf - [-C DIR]`.
        let mut mode = None;
        let mut dir = self.cwd.clone();
        let mut paths = Vec::new();
        let mut it = args.iter().peekable();
        let mut first = true;
        while let Some(a) = it.next() {
            if a.starts_with("--") {
                continue;
            }
            let letters = if let Some(l) = a.strip_prefix('-') {
                Some(l)
            } else if first && !a.contains('/') {
                Some(a.as_str())
            } else {
                None
            };
            first = false;
            if let Some(l) = letters {
                if l == "C" {
                    if let Some(d) = it.next() {
                        dir = normalize(&self.cwd, d);
                    }
                    continue;
                }
                for c in l.chars() {
                    match c {
                        'c' | 'x' | 't' => mode = Some(c),
                        // `f` takes the next argument; only stdin/stdout ("-") is supported.
                        'f' => {
                            it.next();
                        }
                        _ => {}
                    }
                }
            } else {
                paths.push(a.clone());
            }
        }
        match mode {
            Some('c') => {
                if paths.is_empty() {
                    io.stderr
                        .write(b"tar: Cowardly refusing to create an empty archive\n")
                        .await;
                    return 2;
                }
                let (data, errors) = {
                    let fs = self.fs();
                    tar::create(&fs, &dir, &paths)
                };
                if paths.iter().any(|p| p.starts_with('/')) {
                    io.stderr
                        .write(b"tar: Removing leading `/' from member names\n")
                        .await;
                }
                io.stdout.write(&data).await;
                for e in &errors {
                    io.stderr.write(format!("{e}\n").as_bytes()).await;
                }
                if errors.is_empty() {
                    0
                } else {
                    2
                }
            }
            Some('x') => {
                let data = io.stdin.all().await;
                let res = {
                    let mut fs = self.fs();
                    tar::extract(&mut fs, &dir, &data)
                };
                match res {
                    Ok(_) => 0,
                    Err(e) => {
                        io.stderr.write(format!("{e}\n").as_bytes()).await;
                        2
                    }
                }
            }
            _ => {
                io.stderr
                    .write(b"tar: You must specify one of the '-Acdtrux' options\n")
                    .await;
                2
            }
        }
    }

    async fn sh(&mut self, args: &[String], io: &mut Io<'_>) -> i32 {
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-c" => {
                    let Some(script) = it.next() else {
                        io.stderr.write(b"sh: -c requires an argument\n").await;
                        return 2;
                    };
                    let script = script.clone();
                    let code = self.run_script(&script, io).await;
                    // `exit` inside `sh -c` ends that shell only.
                    return self.exited.take().unwrap_or(code);
                }
                "-i" | "-l" | "-e" | "-x" | "-" => {}
                file => {
                    let abs = normalize(&self.cwd, file);
                    let src = self
                        .fs()
                        .read(&abs)
                        .map(|d| String::from_utf8_lossy(d).into_owned());
                    return match src {
                        Ok(src) => {
                            let code = self.run_script(&src, io).await;
                            self.exited.take().unwrap_or(code)
                        }
                        Err(_) => {
                            io.stderr
                                .write(
                                    format!("sh: can't open '{file}': No such file or directory\n")
                                        .as_bytes(),
                                )
                                .await;
                            127
                        }
                    };
                }
            }
        }
        let code = self.interactive(io).await;
        self.exited.take().unwrap_or(code)
    }

    /// Reads commands from stdin. With a TTY it acts as the terminal too: prompt, echo and
    /// simple line editing (backspace, Ctrl-C, Ctrl-D).
    async fn interactive(&mut self, io: &mut Io<'_>) -> i32 {
        let tty = io.stdout.is_tty();
        loop {
            if tty {
                io.stdout.write(b"# ").await;
            }
            let line = if tty {
                match read_tty_line(io).await {
                    Some(l) => l,
                    None => return self.last,
                }
            } else {
                match io.stdin.line().await {
                    Some(l) => String::from_utf8_lossy(&l).into_owned(),
                    None => return self.last,
                }
            };
            let code = self.run_script(&line, io).await;
            if let Some(c) = self.exited {
                return c;
            }
            self.last = code;
        }
    }
}

/// One line typed on a terminal, echoing as a line discipline would. `None` on EOF.
async fn read_tty_line(io: &mut Io<'_>) -> Option<String> {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let chunk = io.stdin.chunk().await?;
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'\r' | b'\n' => {
                    io.stdout.write(b"\r\n").await;
                    let mut rest = &chunk[i + 1..];
                    if b == b'\r' && rest.first() == Some(&b'\n') {
                        rest = &rest[1..];
                    }
                    io.stdin.unread(rest);
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
                0x7f | 0x08 => {
                    if line.pop().is_some() {
                        io.stdout.write(b"\x08 \x08").await;
                    }
                }
                0x03 => {
                    io.stdout.write(b"^C\r\n").await;
                    io.stdin.unread(&chunk[i + 1..]);
                    return Some(String::new());
                }
                0x04 if line.is_empty() => {
                    io.stdout.write(b"\r\n").await;
                    return None;
                }
                b => {
                    line.push(b);
                    io.stdout.write(&[b]).await;
                }
            }
        }
    }
}

async fn echo(args: &[String], io: &mut Io<'_>) -> i32 {
    let mut newline = true;
    let mut escapes = false;
    let mut words = args;
    while let Some(first) = words.first() {
        match first.as_str() {
            "-n" => newline = false,
            "-e" => escapes = true,
            "-ne" | "-en" => {
                newline = false;
                escapes = true;
            }
            _ => break,
        }
        words = &words[1..];
    }
    let mut s = words.join(" ");
    if escapes {
        s = unescape(&s);
    }
    if newline {
        s.push('\n');
    }
    io.stdout.write(s.as_bytes()).await;
    0
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('e') => out.push('\x1b'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

async fn printf(args: &[String], io: &mut Io<'_>) -> i32 {
    let Some(fmt) = args.first() else {
        io.stderr
            .write(b"printf: usage: printf FORMAT [ARGUMENT]...\n")
            .await;
        return 2;
    };
    let fmt = unescape(fmt);
    let mut rest = args[1..].iter();
    let mut out = String::new();
    // The format is reused while arguments remain, as POSIX printf does.
    loop {
        let mut used = false;
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('s') => {
                    used = true;
                    out.push_str(rest.next().map(String::as_str).unwrap_or(""));
                }
                Some('d') | Some('i') => {
                    used = true;
                    let n: i64 = rest.next().and_then(|a| a.trim().parse().ok()).unwrap_or(0);
                    out.push_str(&n.to_string());
                }
                Some('c') => {
                    used = true;
                    if let Some(ch) = rest.next().and_then(|a| a.chars().next()) {
                        out.push(ch);
                    }
                }
                Some(o) => {
                    out.push('%');
                    out.push(o);
                }
                None => out.push('%'),
            }
        }
        if !used || rest.len() == 0 {
            break;
        }
    }
    io.stdout.write(out.as_bytes()).await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(argv: &[&str], stdin: &str) -> (String, String, i32) {
        let fs = Arc::new(Mutex::new(Fs::seeded("shop", "web-1", "web-1")));
        let env = vec![
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("HOSTNAME".to_owned(), "web-1".to_owned()),
            ("LOG_LEVEL".to_owned(), "info".to_owned()),
        ];
        let mut sh = Shell::new(env, fs, "web-1".into());
        let mut stdin = Stdin::Buf(Bytes::from(stdin.to_owned()));
        let (mut out, mut err) = (Sink::Buf(Vec::new()), Sink::Buf(Vec::new()));
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let code = sh
            .exec(
                &argv,
                &mut Io {
                    stdin: &mut stdin,
                    stdout: &mut out,
                    stderr: &mut err,
                },
            )
            .await;
        let text = |s: Sink| match s {
            Sink::Buf(v) => String::from_utf8_lossy(&v).into_owned(),
            _ => String::new(),
        };
        (text(out), text(err), code)
    }

    #[tokio::test]
    async fn commands_table() {
        let cases: &[(&[&str], &str, &str, &str, i32)] = &[
            (&["echo", "hello", "world"], "", "hello world\n", "", 0),
            (&["echo", "-n", "x"], "", "x", "", 0),
            (&["cat"], "piped\n", "piped\n", "", 0),
            (&["cat", "/etc/hostname"], "", "web-1\n", "", 0),
            (
                &["cat", "/nope"],
                "",
                "",
                "cat: can't open '/nope': No such file or directory\n",
                1,
            ),
            (&["printf", "%s-%d\\n", "a", "7"], "", "a-7\n", "", 0),
            (&["printenv", "LOG_LEVEL"], "", "info\n", "", 0),
            (&["true"], "", "", "", 0),
            (&["false"], "", "", "", 1),
            (&["pwd"], "", "/\n", "", 0),
            (&["hostname"], "", "web-1\n", "", 0),
            (
                &["ls", "/var/run/secrets/kubernetes.io/serviceaccount"],
                "",
                "ca.crt\nnamespace\ntoken\n",
                "",
                0,
            ),
            (&["nosuch"], "", "", "sh: nosuch: not found\n", 127),
            (&["sh", "-c", "exit 3"], "", "", "", 3),
            (
                &["sh", "-c", "echo a; echo b && echo c"],
                "",
                "a\nb\nc\n",
                "",
                0,
            ),
            (
                &["sh", "-c", "false && echo no || echo yes"],
                "",
                "yes\n",
                "",
                0,
            ),
            (&["sh", "-c", "false; echo $?"], "", "1\n", "", 0),
            (
                &["sh", "-c", "echo 'single $HOSTNAME' \"double $HOSTNAME\""],
                "",
                "single $HOSTNAME double web-1\n",
                "",
                0,
            ),
            (&["sh", "-c", "echo one two | cat"], "", "one two\n", "", 0),
            (
                &["sh", "-c", "printf 'a\\nb\\nc\\n' | grep b"],
                "",
                "b\n",
                "",
                0,
            ),
            (
                &["sh", "-c", "echo saved > /tmp/f && cat /tmp/f"],
                "",
                "saved\n",
                "",
                0,
            ),
            (
                &["sh", "-c", "nosuch 2>&1"],
                "",
                "sh: nosuch: not found\n",
                "",
                127,
            ),
            (
                &["sh", "-c", "echo before; exit 4; echo after"],
                "",
                "before\n",
                "",
                4,
            ),
            (&["sh"], "echo from-stdin\nexit 5\n", "from-stdin\n", "", 5),
            (&["sh", "-c", "cd /etc && pwd"], "", "/etc\n", "", 0),
            (
                &["sh", "-c", "echo 'unterminated"],
                "",
                "",
                "sh: unterminated quoted string\n",
                2,
            ),
            (&["sleep", "0.01"], "", "", "", 0),
        ];
        for (argv, stdin, out, err, code) in cases {
            let got = run(argv, stdin).await;
            assert_eq!(got, (out.to_string(), err.to_string(), *code), "{argv:?}");
        }
    }

    #[tokio::test]
    async fn env_lists_variables() {
        let (out, _, code) = run(&["env"], "").await;
        assert_eq!(code, 0);
        assert!(out.contains("LOG_LEVEL=info\n"), "{out}");
    }

    #[tokio::test]
    async fn tar_round_trip_through_the_shell() {
        let (tar, _, code) = run(&["tar", "cf", "-", "/etc/hostname"], "").await;
        assert_eq!(code, 0);
        assert!(tar.len() >= 1536);
    }
}
