//! Reading passwords as etcdctl does: speakeasy's hidden prompt (`--user name`, `user add`,
//! `user passwd`) and `fmt.Scanf("%s")` (`--interactive=false`).

use std::io::{Read, Write};
use std::process::Command;

/// One byte of stdin; `None` at its end (or on a read error).
fn next_byte(stdin: &mut std::io::StdinLock<'_>) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match stdin.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => return Some(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// speakeasy.Ask: the prompt on stdout, `stty -echo` on our own terminal, one line of stdin
/// (to its newline or its end), `stty echo`, a newline on stdout; the line without surrounding
/// blanks. Off a terminal, stty complains on stderr as it does for etcdctl.
pub(crate) fn ask(prompt: &str) -> Result<String, String> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let stty = |arg: &str| Command::new("stty").arg(arg).status();
    if let Err(e) = stty("-echo") {
        return Err(format!("stty binary not found:\n\t{e}"));
    }
    let mut line = Vec::new();
    {
        let mut stdin = std::io::stdin().lock();
        while let Some(b) = next_byte(&mut stdin) {
            if b == b'\n' {
                break;
            }
            line.push(b);
        }
    }
    let _ = stty("echo");
    println!();
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

/// `fmt.Scanf("%s", &s)`: one word of stdin after any blanks on its first line; empty at a
/// newline or at the end of stdin. The byte that ends the word is consumed.
pub(crate) fn scan_word() -> String {
    let mut stdin = std::io::stdin().lock();
    let mut word = Vec::new();
    let mut b = next_byte(&mut stdin);
    while let Some(c) = b {
        if c == b'\n' || !c.is_ascii_whitespace() {
            break;
        }
        b = next_byte(&mut stdin);
    }
    while let Some(c) = b {
        if c.is_ascii_whitespace() {
            break;
        }
        word.push(c);
        b = next_byte(&mut stdin);
    }
    String::from_utf8_lossy(&word).into_owned()
}
