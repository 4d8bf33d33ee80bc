//! A byte scanner for the XML parts of a workbook, run before calamine parses them.
//!
//! It splits the inflated bytes into the events quick-xml would produce (text, tags, comments,
//! CDATA, processing instructions) without building them, and measures what quick-xml and
//! calamine would buffer: the longest single event, the element nesting (quick-xml keeps a stack of
//! open names), and the content of the elements whose text calamine accumulates into one string
//! (`<t>`, `<is>`, `<v>`, `<si>`, an ODS cell). Start and end tags are handed to an [`XmlVisitor`],
//! which checks what only a given part type knows (a sheet's cell positions, the shared-string
//! count). Memory is bounded by the longest tag, which the token limit caps.
//!
//! It measures conservatively: where quick-xml's reading and this one could differ, this one counts
//! more. It does not validate the XML; calamine still reports malformed files.

use super::Refusal;

/// Bounds on one XML part.
#[derive(Debug, Clone, Copy)]
pub(in crate::read) struct XmlLimits {
    /// Longest single event (a text run, a tag, a comment): quick-xml buffers each one whole.
    pub token_bytes: u64,
    /// Deepest element nesting.
    pub depth: u32,
    /// Longest content of one element named in `text_elements` (markup included).
    pub text_bytes: u64,
    /// Local names of the elements whose content calamine gathers into one string.
    pub text_elements: &'static [&'static str],
}

/// Receives the tags of a part, in order.
pub(in crate::read) trait XmlVisitor {
    /// A start tag: its qualified name, the bytes after the name, whether it is `<x/>` (then
    /// [`end`](Self::end) follows at once), and the offset in the part just after it.
    fn start(&mut self, name: &[u8], attrs: &[u8], empty: bool, at: u64) -> Result<(), Refusal>;
    /// An end tag, and the offset just after it.
    fn end(&mut self, _name: &[u8], _at: u64) -> Result<(), Refusal> {
        Ok(())
    }
}

/// A visitor that only lets the scanner measure.
pub(in crate::read) struct NoVisitor;

impl XmlVisitor for NoVisitor {
    fn start(&mut self, _: &[u8], _: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// Just after `<`.
    Open,
    /// Just after `<!`.
    Bang,
    /// Inside a tag (`end` for `</x>`), `quote` is the open quote or 0.
    Tag {
        end: bool,
        quote: u8,
    },
    /// Inside `<!--`, `<![`, `<?`: ends at a `>` after `close`, once `min` bytes are `seen`.
    Markup {
        close: &'static [u8],
        min: u64,
        seen: u64,
    },
}

/// An element whose content is being gathered: its qualified name and where its content began.
struct OpenText {
    name: Vec<u8>,
    start: u64,
}

/// Deepest nesting of gathered elements (`<si><r><t>` is two); more is refused.
const MAX_OPEN_TEXTS: usize = 16;

/// The scanner state of one part.
pub(in crate::read) struct XmlScan {
    limits: XmlLimits,
    state: State,
    /// Bytes consumed so far.
    offset: u64,
    /// Where the current event began.
    token_start: u64,
    /// The current tag, without `<`, `</` and `>`.
    tag: Vec<u8>,
    /// The last two bytes seen inside a comment, CDATA section or processing instruction.
    tail: [u8; 2],
    depth: u32,
    texts: Vec<OpenText>,
}

impl XmlScan {
    pub(in crate::read) fn new(limits: XmlLimits) -> Self {
        XmlScan {
            limits,
            state: State::Text,
            offset: 0,
            token_start: 0,
            tag: Vec::new(),
            tail: [0; 2],
            depth: 0,
            texts: Vec::new(),
        }
    }

    /// Scans the next bytes of the part.
    pub(in crate::read) fn feed(
        &mut self,
        chunk: &[u8],
        visitor: &mut impl XmlVisitor,
    ) -> Result<(), Refusal> {
        let mut i = 0;
        while i < chunk.len() {
            i += self.step(&chunk[i..], visitor)?;
        }
        self.check_open_lengths()
    }

    /// Consumes some bytes of `rest` (at least one); returns how many.
    fn step(&mut self, rest: &[u8], visitor: &mut impl XmlVisitor) -> Result<usize, Refusal> {
        let byte = rest[0];
        match self.state {
            State::Text => {
                let Some(n) = rest.iter().position(|&b| b == b'<') else {
                    self.offset += rest.len() as u64;
                    return Ok(rest.len());
                };
                self.offset += n as u64;
                self.end_token()?;
                self.offset += 1;
                self.state = State::Open;
                Ok(n + 1)
            }
            State::Open => {
                self.tag.clear();
                self.tail = [0; 2];
                let (state, used) = match byte {
                    b'!' => (State::Bang, 1),
                    b'?' => (Self::markup(b"?", 0), 1),
                    b'/' => (
                        State::Tag {
                            end: true,
                            quote: 0,
                        },
                        1,
                    ),
                    _ => (
                        State::Tag {
                            end: false,
                            quote: 0,
                        },
                        0,
                    ),
                };
                self.state = state;
                self.offset += used as u64;
                Ok(used)
            }
            State::Bang => {
                self.state = match byte {
                    // As quick-xml: a comment is at least `<!---->`; CDATA ends at the first `]]>`.
                    b'-' => Self::markup(b"--", 3),
                    b'[' => Self::markup(b"]]", 0),
                    b'D' | b'd' => return Err(Refusal::Doctype),
                    _ => return Err(Refusal::BadMarkup),
                };
                self.offset += 1;
                Ok(1)
            }
            State::Markup { close, min, seen } => {
                self.offset += 1;
                if byte == b'>' && self.tail.ends_with(close) && seen >= min {
                    return self.close_event().map(|()| 1);
                }
                if self.offset - self.token_start > self.limits.token_bytes {
                    return Err(Refusal::TokenTooLong(self.limits.token_bytes));
                }
                self.tail = [self.tail[1], byte];
                self.state = State::Markup {
                    close,
                    min,
                    seen: seen + 1,
                };
                Ok(1)
            }
            State::Tag { end, quote } => self.step_tag(rest, end, quote, visitor),
        }
    }

    fn markup(close: &'static [u8], min: u64) -> State {
        State::Markup {
            close,
            min,
            seen: 0,
        }
    }

    /// Inside a tag: copies bytes up to the next quote or `>`, and handles that byte.
    fn step_tag(
        &mut self,
        rest: &[u8],
        end: bool,
        quote: u8,
        visitor: &mut impl XmlVisitor,
    ) -> Result<usize, Refusal> {
        let special = |b: u8| {
            if quote == 0 {
                matches!(b, b'>' | b'"' | b'\'')
            } else {
                b == quote
            }
        };
        let Some(n) = rest.iter().position(|&b| special(b)) else {
            self.push_tag(rest)?;
            return Ok(rest.len());
        };
        self.push_tag(&rest[..n])?;
        self.offset += 1;
        match rest[n] {
            b'>' if quote == 0 => {
                self.close_event()?;
                if end {
                    self.end_tag(visitor)?;
                } else {
                    self.start_tag(visitor)?;
                }
            }
            q => {
                self.tag.push(q);
                let quote = if quote == 0 { q } else { 0 };
                self.state = State::Tag { end, quote };
            }
        }
        Ok(n + 1)
    }

    fn push_tag(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.offset += bytes.len() as u64;
        if self.offset - self.token_start > self.limits.token_bytes {
            return Err(Refusal::TokenTooLong(self.limits.token_bytes));
        }
        self.tag.extend_from_slice(bytes);
        Ok(())
    }

    /// The event that began at `token_start` ends here (after its `>`).
    fn close_event(&mut self) -> Result<(), Refusal> {
        self.end_token()?;
        self.state = State::Text;
        Ok(())
    }

    fn end_token(&mut self) -> Result<(), Refusal> {
        if self.offset - self.token_start > self.limits.token_bytes {
            return Err(Refusal::TokenTooLong(self.limits.token_bytes));
        }
        self.token_start = self.offset;
        self.check_open_lengths()
    }

    fn start_tag(&mut self, visitor: &mut impl XmlVisitor) -> Result<(), Refusal> {
        let tag = std::mem::take(&mut self.tag);
        let (body, empty) = match tag.strip_suffix(b"/") {
            Some(body) => (body, true),
            None => (&tag[..], false),
        };
        let name_len = body
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(body.len());
        let (name, attrs) = body.split_at(name_len);
        let result = visitor
            .start(name, attrs, empty, self.offset)
            .and_then(|()| match empty {
                // calamine's readers expand `<x/>` into a start and an end.
                true => visitor.end(name, self.offset),
                false => self.open(name),
            });
        self.tag = tag;
        result
    }

    fn open(&mut self, name: &[u8]) -> Result<(), Refusal> {
        self.depth += 1;
        if self.depth > self.limits.depth {
            return Err(Refusal::TooDeep(self.limits.depth));
        }
        if self
            .limits
            .text_elements
            .iter()
            .any(|t| local_name(name) == t.as_bytes())
        {
            if self.texts.len() >= MAX_OPEN_TEXTS {
                return Err(Refusal::TooDeep(MAX_OPEN_TEXTS as u32));
            }
            self.texts.push(OpenText {
                name: name.to_vec(),
                start: self.offset,
            });
        }
        Ok(())
    }

    fn end_tag(&mut self, visitor: &mut impl XmlVisitor) -> Result<(), Refusal> {
        let name = self.tag.trim_ascii_end();
        self.depth = self.depth.saturating_sub(1);
        // Only the innermost gathered element closes: calamine's inner loops ignore the end tags
        // of the elements around them, so an outer one keeps gathering.
        if self.texts.last().is_some_and(|t| t.name == name) {
            self.texts.pop();
        }
        visitor.end(name, self.offset)
    }

    fn check_open_lengths(&self) -> Result<(), Refusal> {
        match self.texts.first() {
            Some(t) if self.offset - t.start > self.limits.text_bytes => {
                Err(Refusal::TextTooLong(self.limits.text_bytes))
            }
            _ if self.state == State::Text
                && self.offset - self.token_start > self.limits.token_bytes =>
            {
                Err(Refusal::TokenTooLong(self.limits.token_bytes))
            }
            _ => Ok(()),
        }
    }
}

/// The name after its namespace prefix.
pub(in crate::read) fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// The attributes (qualified name, raw value) after a tag's name, up to a malformed one.
pub(in crate::read) fn attrs(attrs: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = attrs;
    std::iter::from_fn(move || {
        rest = rest.trim_ascii_start();
        let eq = rest.iter().position(|&b| b == b'=')?;
        let name = rest[..eq].trim_ascii();
        let after = rest[eq + 1..].trim_ascii_start();
        let quote = *after.first().filter(|q| matches!(q, b'"' | b'\''))?;
        let len = after[1..].iter().position(|&b| b == quote)?;
        rest = &after[len + 2..];
        Some((name, &after[1..1 + len]))
    })
}

/// The raw value of attribute `key` (qualified name, as written), the first if repeated.
pub(in crate::read) fn attr<'a>(tag_attrs: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    attrs(tag_attrs).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Decodes the five XML entities and character references of an attribute value.
pub(in crate::read) fn unescape(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut rest = &text[..];
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        match entity(&after[..semi]) {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..amp + semi + 2]),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => name.strip_prefix('#')?.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// An unsigned decimal, saturating (a number too large for `u64` is `u64::MAX`).
pub(in crate::read) fn parse_u64(raw: &[u8]) -> Option<u64> {
    let raw = raw.trim_ascii();
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(raw.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits {
        token_bytes: 64,
        depth: 4,
        text_bytes: 100,
        text_elements: &["t", "is"],
    };

    #[derive(Default)]
    struct Tags(Vec<String>);

    impl XmlVisitor for Tags {
        fn start(&mut self, name: &[u8], attrs: &[u8], empty: bool, _: u64) -> Result<(), Refusal> {
            let name = String::from_utf8_lossy(name);
            let attrs = String::from_utf8_lossy(attrs.trim_ascii());
            self.0.push(format!("<{name}|{attrs}|{empty}>"));
            Ok(())
        }
        fn end(&mut self, name: &[u8], _: u64) -> Result<(), Refusal> {
            self.0.push(format!("</{}>", String::from_utf8_lossy(name)));
            Ok(())
        }
    }

    /// Scans `xml` fed in pieces of `piece` bytes.
    fn scan(xml: &[u8], piece: usize) -> Result<Vec<String>, Refusal> {
        let mut s = XmlScan::new(LIMITS);
        let mut tags = Tags::default();
        for chunk in xml.chunks(piece) {
            s.feed(chunk, &mut tags)?;
        }
        Ok(tags.0)
    }

    #[test]
    fn tags_arrive_whole_whatever_the_chunking() {
        let xml = br#"<?xml version="1.0"?><!-- a > b --><row r="1"><c r='A1' t="s"/><x a=">"></x></row>"#;
        let want = vec![
            "<row|r=\"1\"|false>",
            "<c|r='A1' t=\"s\"|true>",
            "</c>",
            "<x|a=\">\"|false>",
            "</x>",
            "</row>",
        ];
        for piece in [1, 2, 3, 7, xml.len()] {
            assert_eq!(scan(xml, piece).unwrap(), want, "piece {piece}");
        }
    }

    #[test]
    fn a_long_text_run_is_refused() {
        let mut xml = b"<a>".to_vec();
        xml.extend(std::iter::repeat_n(b' ', 65));
        xml.extend(b"</a>");
        assert!(matches!(scan(&xml, 5), Err(Refusal::TokenTooLong(64))));
        xml.truncate(3 + 60);
        xml.extend(b"</a>");
        assert!(scan(&xml, 5).is_ok());
    }

    #[test]
    fn a_gathered_text_is_measured_across_nested_ends() {
        // `</is>` inside `<t>` does not end calamine's gathering of the `<is>`.
        let piece = b"<t>0123456789</is></t>";
        let mut xml = b"<is>".to_vec();
        for _ in 0..5 {
            xml.extend(piece);
        }
        xml.extend(b"</is>");
        assert!(matches!(scan(&xml, 8), Err(Refusal::TextTooLong(100))));
        assert!(scan(b"<is><t>short</t></is><is><t>short</t></is>", 3).is_ok());
    }

    #[test]
    fn deep_nesting_and_doctype_are_refused() {
        assert!(matches!(
            scan(b"<a><a><a><a><a>", 2),
            Err(Refusal::TooDeep(4))
        ));
        assert!(scan(b"<a><a/><a/><a/><a/><a/></a>", 2).is_ok());
        assert!(matches!(
            scan(b"<!DOCTYPE x []><a/>", 2),
            Err(Refusal::Doctype)
        ));
    }

    #[test]
    fn a_comment_ends_only_at_its_own_terminator() {
        let mut xml = b"<!-->".to_vec();
        xml.extend(std::iter::repeat_n(b'x', 70));
        xml.extend(b"-->");
        assert!(matches!(scan(&xml, 4), Err(Refusal::TokenTooLong(64))));
        assert_eq!(scan(b"<!----><a/>", 1).unwrap(), vec!["<a||true>", "</a>"]);
        assert_eq!(
            scan(b"<!---><a/>--><b/>", 1).unwrap(),
            vec!["<b||true>", "</b>"]
        );
        assert_eq!(
            scan(b"<![CDATA[<a/>]]><b/>", 2).unwrap(),
            vec!["<b||true>", "</b>"]
        );
    }

    #[test]
    fn attributes_and_entities() {
        let attrs = br#" name="P&amp;L &#x41;&#66;" r:id = 'rId1' x="""#;
        assert_eq!(attr(attrs, b"r:id"), Some(&b"rId1"[..]));
        assert_eq!(attr(attrs, b"id"), None);
        assert_eq!(unescape(attr(attrs, b"name").unwrap()), "P&L AB");
        assert_eq!(parse_u64(b" 42 "), Some(42));
        assert_eq!(parse_u64(b"99999999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_u64(b"-1"), None);
    }
}
