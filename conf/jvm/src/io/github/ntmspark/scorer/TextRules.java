package io.github.ntmspark.scorer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The text rules of {@code ntm_spark/core/text.py}, ported line by line: raw text to lemmas.
 *
 * <p>Python is the definition ({@code TextNormalizer.normalize} with the registered model's closed
 * lemma table, as {@code VocabularyLemmaNormalizer} scores); each method names the Python function
 * it mirrors, and the regular expressions are written out as code over Python's character
 * classes ({@link PyUnicode}), never as Java regexes, whose {@code \s}, {@code \w}, {@code .} and
 * {@code $} mean other things. Lengths are in code points, as Python counts them.
 */
final class TextRules {
  /** The rule sets this class implements (ntm_spark.core.text.TEXT_RULE_SETS). */
  static final List<String> RULE_SETS = Arrays.asList("notebook", "v1", "v2");

  private final PyUnicode u;
  final String rules;
  final boolean clean;
  private final Set<String> stopWords;
  private final Map<String, String> lemmas;
  private final Map<String, String> v2Overrides;

  TextRules(
      PyUnicode unicode,
      String rules,
      boolean clean,
      Set<String> stopWords,
      Map<String, String> lemmas,
      Map<String, String> v2Overrides) {
    if (!RULE_SETS.contains(rules)) {
      throw new IllegalArgumentException(
          "the model's text rule set '" + rules + "' has no JVM implementation (the JVM scorer has "
              + RULE_SETS + "): score it with the Python scorer (trigger processing_time), or retrain it "
              + "with text_rules one of " + RULE_SETS + ".");
    }
    this.u = unicode;
    this.rules = rules;
    this.clean = clean;
    this.stopWords = stopWords;
    this.lemmas = lemmas;
    this.v2Overrides = v2Overrides;
  }

  // ------------------------------------------------------------------ normalize

  /** {@code TextNormalizer.normalize}: the document's lemmas in order, stop words dropped. */
  List<String> normalize(String text) {
    List<String> out = new ArrayList<>();
    if (text == null || text.isEmpty()) {
      return out;
    }
    if (clean) {
      text = stripNewsgroupNoise(text);
    }
    String lowered;
    if (rules.equals("v2")) {
      lowered = stripContractions(u.lower(stripEncodedBlocks(text)));
    } else {
      lowered = u.lower(text);
    }
    for (String token : tokens(lowered)) {
      String lemma = resolveToken(token);
      if (lemma != null) {
        out.add(lemma);
      }
    }
    return out;
  }

  /** {@code _TOKEN_RE.findall}: maximal runs of 2 or more {@code \w} code points. */
  List<String> tokens(String s) {
    List<String> out = new ArrayList<>();
    int n = s.length();
    int i = 0;
    while (i < n) {
      int cp = s.codePointAt(i);
      if (!u.isWord(cp)) {
        i += Character.charCount(cp);
        continue;
      }
      int start = i;
      int count = 0;
      while (i < n) {
        cp = s.codePointAt(i);
        if (!u.isWord(cp)) {
          break;
        }
        count++;
        i += Character.charCount(cp);
      }
      if (count >= 2) {
        out.add(s.substring(start, i));
      }
    }
    return out;
  }

  /** {@code TextNormalizer._resolve_token}: the token's lemma, or null when it is dropped. */
  String resolveToken(String token) {
    if (!u.isAlpha(token.codePointAt(0))) { // keeps_token
      return null;
    }
    String lemma;
    if (rules.equals("notebook")) {
      lemma = lemmas.getOrDefault(token, token);
    } else if (stopWords.contains(token)) {
      return null;
    } else if (rules.equals("v2")) {
      lemma = v2Lemma(token);
    } else {
      lemma = lemmas.getOrDefault(token, token);
    }
    return stopWords.contains(lemma) ? null : lemma;
  }

  /** {@code v2_lemma} over the closed table. */
  private String v2Lemma(String token) {
    String override = v2Overrides.get(token);
    if (override != null) {
      return override;
    }
    if (token.endsWith("ss")) {
      return token;
    }
    String lemma = lemmas.getOrDefault(token, token);
    return PyUnicode.length(lemma) < 2 ? token : lemma;
  }

  // ------------------------------------------------------------------ cleaning

  private boolean isBlankNotNewline(int cp) {
    return cp != '\n' && u.isSpace(cp);
  }

  /** Whether s[from, to) holds only whitespace other than newlines. */
  private boolean allBlank(String s, int from, int to) {
    for (int i = from; i < to; ) {
      int cp = s.codePointAt(i);
      if (!isBlankNotNewline(cp)) {
        return false;
      }
      i += Character.charCount(cp);
    }
    return true;
  }

  /** {@code strip_newsgroup_noise}. */
  String stripNewsgroupNoise(String text) {
    return stripFooter(stripQuotes(stripHeader(normalizeNewlines(text))));
  }

  /** {@code normalize_newlines}: CR LF and lone CR become LF. */
  static String normalizeNewlines(String text) {
    if (text.indexOf('\r') < 0) {
      return text;
    }
    return text.replace("\r\n", "\n").replace('\r', '\n');
  }

  /** {@code strip_header}. */
  String stripHeader(String text) {
    int start = 0;
    int blankStart = -1;
    int blankEnd = -1;
    while (true) {
      int nl = text.indexOf('\n', start);
      int end = nl < 0 ? text.length() : nl;
      if (allBlank(text, start, end)) {
        blankStart = start;
        blankEnd = end;
        break;
      }
      if (nl < 0) {
        break;
      }
      start = nl + 1;
    }
    String head = blankStart >= 0 ? text.substring(0, blankStart) : text;
    if (!hasHeaderField(head)) {
      return text;
    }
    if (blankStart < 0 || blankEnd + 1 > text.length()) {
      return "";
    }
    return text.substring(blankEnd + 1);
  }

  /** {@code _HEADER_FIELD_RE.search}: a line {@code [A-Za-z][A-Za-z0-9-]*:} then a blank. */
  private boolean hasHeaderField(String head) {
    int start = 0;
    while (start <= head.length()) {
      int nl = head.indexOf('\n', start);
      int end = nl < 0 ? head.length() : nl;
      if (end > start && asciiLetter(head.charAt(start))) {
        int i = start + 1;
        while (i < end && (asciiLetter(head.charAt(i)) || asciiDigit(head.charAt(i)) || head.charAt(i) == '-')) {
          i++;
        }
        if (i < end && head.charAt(i) == ':' && i + 1 < end && isBlankNotNewline(head.codePointAt(i + 1))) {
          return true;
        }
      }
      if (nl < 0) {
        break;
      }
      start = nl + 1;
    }
    return false;
  }

  private static boolean asciiLetter(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  }

  private static boolean asciiDigit(char c) {
    return c >= '0' && c <= '9';
  }

  /** {@code strip_quotes}: lines matching {@code _QUOTE_OR_ATTRIBUTION_RE} go, with their newline. */
  String stripQuotes(String text) {
    StringBuilder out = null;
    int start = 0;
    int n = text.length();
    while (true) {
      int nl = text.indexOf('\n', start);
      int end = nl < 0 ? n : nl;
      boolean drop = isQuoteOrAttribution(text, start, end);
      if (drop && out == null) {
        out = new StringBuilder(n);
        out.append(text, 0, start);
      } else if (!drop && out != null) {
        out.append(text, start, nl < 0 ? n : nl + 1);
      }
      if (nl < 0) {
        break;
      }
      start = nl + 1;
    }
    return out == null ? text : out.toString();
  }

  private boolean isQuoteOrAttribution(String s, int start, int end) {
    if (end == start) {
      return false;
    }
    int i = start;
    while (i < end) {
      int cp = s.codePointAt(i);
      if (!isBlankNotNewline(cp)) {
        break;
      }
      i += Character.charCount(cp);
    }
    if (i < end && (s.charAt(i) == '>' || s.charAt(i) == '|')) {
      return true;
    }
    if ((s.startsWith("In article", i) && i + 10 <= end && wordBoundaryAfter(s, i + 10, end))
        || (s.startsWith("Quoted from", i) && i + 11 <= end && wordBoundaryAfter(s, i + 11, end))) {
      return true;
    }
    String line = s.substring(start, end);
    if (line.contains("writes:") || line.contains("wrote:")) {
      return true;
    }
    for (int k = line.indexOf("writes in"); k >= 0; k = line.indexOf("writes in", k + 1)) {
      if (wordBoundaryAfter(line, k + 9, line.length())) {
        return true;
      }
    }
    return false;
  }

  /** {@code \b} after a word character at {@code pos}: the end of the line, or a non-word code point. */
  private boolean wordBoundaryAfter(String s, int pos, int end) {
    return pos >= end || !u.isWord(s.codePointAt(pos));
  }

  /** {@code strip_footer}: everything from the last separator line ({@code --}, dashes only). */
  String stripFooter(String text) {
    int last = -1;
    int start = 0;
    while (true) {
      int nl = text.indexOf('\n', start);
      int end = nl < 0 ? text.length() : nl;
      if (isSignatureSeparator(text, start, end)) {
        last = start;
      }
      if (nl < 0) {
        break;
      }
      start = nl + 1;
    }
    if (last <= 0) {
      return text;
    }
    String head = text.substring(0, last);
    return head.endsWith("\n") ? head.substring(0, head.length() - 1) : head;
  }

  private boolean isSignatureSeparator(String s, int start, int end) {
    int i = start;
    while (i < end && isBlankNotNewline(s.codePointAt(i))) {
      i += Character.charCount(s.codePointAt(i));
    }
    int dashes = 0;
    while (i < end && s.charAt(i) == '-') {
      dashes++;
      i++;
    }
    if (dashes < 2) {
      return false;
    }
    while (i < end && isBlankNotNewline(s.codePointAt(i))) {
      i += Character.charCount(s.codePointAt(i));
    }
    return i == end;
  }

  // ------------------------------------------------------------------ encoded blocks (v2)

  /** {@code strip_encoded_blocks}. */
  String stripEncodedBlocks(String text) {
    if (!encodedHint(text)) {
      return text;
    }
    String[] lines = text.split("\n", -1);
    boolean[] drop = EncodedBlocks.flags(u, lines);
    boolean any = false;
    for (boolean d : drop) {
      any |= d;
    }
    if (!any) {
      return text;
    }
    StringBuilder out = new StringBuilder(text.length());
    boolean first = true;
    for (int i = 0; i < lines.length; i++) {
      if (!drop[i]) {
        if (!first) {
          out.append('\n');
        }
        out.append(lines[i]);
        first = false;
      }
    }
    return out.toString();
  }

  /** {@code _ENCODED_HINT_RE.search}: some line could start or be part of an encoded block. */
  private boolean encodedHint(String text) {
    int start = 0;
    while (true) {
      int nl = text.indexOf('\n', start);
      int end = nl < 0 ? text.length() : nl;
      if (EncodedBlocks.hintLine(u, text.substring(start, end))) {
        return true;
      }
      if (nl < 0) {
        return false;
      }
      start = nl + 1;
    }
  }

  // ------------------------------------------------------------------ contractions (v2)

  private static final String[] CLITICS = {"s", "m", "re", "ve", "d", "ll"};

  /** {@code strip_contractions} on lowercase text. */
  String stripContractions(String text) {
    if (text.indexOf('\u2019') >= 0) {
      text = text.replace('\u2019', '\'');
    }
    if (text.indexOf('\'') < 0) {
      return text;
    }
    String[] parts = text.split("'", -1);
    List<String> out = new ArrayList<>();
    out.add(parts[0]);
    outer:
    for (int p = 1; p < parts.length; p++) {
      String part = parts[p];
      String prev = out.get(out.size() - 1);
      if (!prev.isEmpty() && u.isWord(prev.codePointBefore(prev.length()))) {
        int last = prev.codePointBefore(prev.length());
        boolean tEnds = part.startsWith("t") && (part.length() == 1 || !u.isWord(part.codePointAt(1)));
        if (tEnds && last == 'n') {
          int start = prev.length();
          int count = 0;
          while (start > 0 && u.isWord(prev.codePointBefore(start))) {
            start -= Character.charCount(prev.codePointBefore(start));
            count++;
          }
          if (count >= 2) {
            out.set(out.size() - 1, prev.substring(0, start) + " ");
            out.add(part.substring(1));
            continue;
          }
        }
        for (String c : CLITICS) {
          if (part.startsWith(c) && (part.length() == c.length() || !u.isWord(part.codePointAt(c.length())))) {
            out.set(out.size() - 1, prev + part.substring(c.length()));
            continue outer;
          }
        }
      }
      out.add("'" + part);
    }
    StringBuilder sb = new StringBuilder(text.length());
    for (String s : out) {
      sb.append(s);
    }
    return sb.toString();
  }
}
