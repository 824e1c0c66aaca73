package io.github.ntmspark.scorer;

/**
 * {@code encoded_line_flags} and its line tests from {@code ntm_spark/core/text.py} (the v2 rules),
 * each regular expression written out as code. Every method names the Python it mirrors.
 */
final class EncodedBlocks {
  private EncodedBlocks() {}

  // ------------------------------------------------------------------ small helpers

  private static boolean inRange(String s, int from, int to, char lo, char hi) {
    for (int i = from; i < to; i++) {
      char c = s.charAt(i);
      if (c < lo || c > hi) {
        return false;
      }
    }
    return true;
  }

  private static boolean isHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }

  private static boolean isLower(char c) {
    return c >= 'a' && c <= 'z';
  }

  private static boolean isUpper(char c) {
    return c >= 'A' && c <= 'Z';
  }

  private static boolean isBase64(char c) {
    return isLower(c) || isUpper(c) || (c >= '0' && c <= '9') || c == '+' || c == '/';
  }

  /** Python's {@code s.rstrip()}. */
  private static String rstrip(PyUnicode u, String s) {
    int end = s.length();
    while (end > 0) {
      int cp = s.codePointBefore(end);
      if (!u.isSpace(cp)) {
        break;
      }
      end -= Character.charCount(cp);
    }
    return s.substring(0, end);
  }

  private static boolean hasSpace(PyUnicode u, String s) {
    for (int i = 0; i < s.length(); ) {
      int cp = s.codePointAt(i);
      if (u.isSpace(cp)) {
        return true;
      }
      i += Character.charCount(cp);
    }
    return false;
  }

  // ------------------------------------------------------------------ the hint

  /** One line of {@code _ENCODED_HINT_RE} (a MULTILINE search: any line matching any branch). */
  static boolean hintLine(PyUnicode u, String line) {
    // [^\S\n]*\S{40,}[^\S\n]*$
    String s = u.strip(line);
    if (PyUnicode.length(s) >= 40 && !hasSpace(u, s)) {
      return true;
    }
    // begin [0-7]{3,4} (a blank)
    if (line.startsWith("begin ")) {
      int r = 0;
      while (6 + r < line.length() && line.charAt(6 + r) >= '0' && line.charAt(6 + r) <= '7') {
        r++;
      }
      if ((r == 3 || r == 4) && 6 + r < line.length() && line.charAt(6 + r) == ' ') {
        return true;
      }
    }
    // [^\S\n]*-----BEGIN PGP
    int i = 0;
    while (i < line.length() && u.isSpace(line.codePointAt(i))) {
      i += Character.charCount(line.codePointAt(i));
    }
    if (line.startsWith("-----BEGIN PGP ", i)) {
      return true;
    }
    // X?M[\x20-\x60]{55,61}$
    if (uuFull(line)) {
      return true;
    }
    // [^\S\n]*(?:[0-9A-Fa-f]{2,8}:?[^\S\n]+){8}
    for (int g = 0; g < 8; g++) {
      int h = 0;
      while (i + h < line.length() && isHex(line.charAt(i + h))) {
        h++;
      }
      if (h < 2 || h > 8) {
        return false;
      }
      i += h;
      if (i < line.length() && line.charAt(i) == ':') {
        i++;
      }
      int b = i;
      while (i < line.length() && u.isSpace(line.codePointAt(i))) {
        i += Character.charCount(line.codePointAt(i));
      }
      if (i == b) {
        return false;
      }
    }
    return true;
  }

  // ------------------------------------------------------------------ line tests

  /** {@code _UU_FULL_RE.fullmatch}: {@code X?M[\x20-\x60]{55,61}}. */
  static boolean uuFull(String s) {
    if (s.startsWith("XM") && s.length() - 2 >= 55 && s.length() - 2 <= 61 && inRange(s, 2, s.length(), ' ', '`')) {
      return true;
    }
    return s.startsWith("M") && s.length() - 1 >= 55 && s.length() - 1 <= 61 && inRange(s, 1, s.length(), ' ', '`');
  }

  /** {@code _UU_ANY_RE.fullmatch}: {@code X?[\x20-\x60]{1,62}}. */
  private static boolean uuAny(String s) {
    int n = s.length();
    if (n == 0 || !inRange(s, 0, n, ' ', '`')) {
      return false;
    }
    return n <= 62 || (n == 63 && s.charAt(0) == 'X');
  }

  /** {@code _wordlike_chars}: characters in runs that look like words. */
  static int wordlikeChars(String s) {
    int n = s.length();
    boolean base64 = false;
    {
      int i = 0;
      while (i < n && isBase64(s.charAt(i))) {
        i++;
      }
      if (i > 0) {
        int j = i;
        while (j < n && s.charAt(j) == '=') {
          j++;
        }
        base64 = j == n;
      }
    }
    boolean mixed = false;
    if (base64) {
      for (int i = 0; i < n; i++) {
        mixed |= isLower(s.charAt(i));
      }
    }
    int total = 0;
    int i = 0;
    while (i < n) {
      int lower = 0;
      while (i + lower < n && isLower(s.charAt(i + lower))) {
        lower++;
      }
      if (lower >= 3) { // [a-z]{3,}
        total += lower;
        i += lower;
        continue;
      }
      if (isUpper(s.charAt(i))) {
        int after = 0;
        while (i + 1 + after < n && isLower(s.charAt(i + 1 + after))) {
          after++;
        }
        if (after >= 2) { // [A-Z][a-z]{2,}
          total += 1 + after;
          i += 1 + after;
          continue;
        }
        if (!mixed) {
          int upper = 0;
          while (i + upper < n && isUpper(s.charAt(i + upper))) {
            upper++;
          }
          if (upper >= 4) { // [A-Z]{4,}
            total += upper;
            i += upper;
            continue;
          }
        }
      }
      i++;
    }
    return total;
  }

  /** {@code _is_encoded_line}. Non-ASCII code points are rare here; lengths are in code points. */
  static boolean isEncodedLine(PyUnicode u, String line, int minLength) {
    String s = u.strip(line);
    int len = PyUnicode.length(s);
    if (len < minLength || hasSpace(u, s)) {
      return false;
    }
    boolean alpha = false;
    boolean digit = false;
    java.util.HashMap<Integer, Integer> counts = new java.util.HashMap<>();
    int maxCount = 0;
    for (int i = 0; i < s.length(); ) {
      int cp = s.codePointAt(i);
      alpha |= u.isAlpha(cp);
      digit |= u.isDigit(cp);
      if (!u.isAlnum(cp)) {
        int c = counts.merge(cp, 1, Integer::sum);
        maxCount = Math.max(maxCount, c);
      }
      i += Character.charCount(cp);
    }
    if (!(alpha && digit)) {
      return false;
    }
    if (maxCount > 0.25 * len) {
      return false;
    }
    return wordlikeCharsCp(s) < 0.5 * len;
  }

  /** {@link #wordlikeChars} counts UTF-16 units of ASCII runs: the same as code points (the runs are ASCII). */
  private static int wordlikeCharsCp(String s) {
    return wordlikeChars(s);
  }

  /** {@code _is_uu_line}. */
  static boolean isUuLine(PyUnicode u, String line) {
    String s = rstrip(u, line);
    if (uuFull(s) || uuFull(line)) {
      return true;
    }
    if (s.startsWith("X") && s.length() > 1 && s.charAt(1) != 'X') {
      s = s.substring(1);
    }
    if (s.isEmpty() || !uuAny(s)) {
      return false;
    }
    int nBytes = s.charAt(0) - 32;
    if (nBytes == 0 || s.charAt(0) == '`') {
      return s.length() <= 2;
    }
    int expected = 4 * ((nBytes + 2) / 3);
    int rest = s.length() - 1;
    return expected - 3 <= rest && rest <= expected + 1;
  }

  /** {@code _is_uu_body_line}. */
  static boolean isUuBodyLine(PyUnicode u, String line) {
    String s = uuFull(line) ? line : rstrip(u, line);
    if (!uuFull(s)) {
      return false;
    }
    return wordlikeChars(s) < 0.5 * s.length();
  }

  /** {@code _is_hex_dump_line}. */
  static boolean isHexDumpLine(PyUnicode u, String line) {
    int bar = line.indexOf('|');
    String head = bar < 0 ? line : line.substring(0, bar);
    java.util.List<String> fields = new java.util.ArrayList<>();
    int i = 0;
    int n = head.length();
    while (i < n) {
      while (i < n && u.isSpace(head.codePointAt(i))) {
        i += Character.charCount(head.codePointAt(i));
      }
      int start = i;
      while (i < n && !u.isSpace(head.codePointAt(i))) {
        i += Character.charCount(head.codePointAt(i));
      }
      if (i > start) {
        fields.add(head.substring(start, i));
      }
    }
    if (fields.size() < 8) {
      return false;
    }
    int hexFields = 0;
    int withLetters = 0;
    for (String f : fields) {
      int end = f.length();
      while (end > 0 && f.charAt(end - 1) == ':') {
        end--;
      }
      if (end < 2 || end > 4) {
        continue;
      }
      boolean hex = true;
      boolean letter = false;
      for (int k = 0; k < end; k++) {
        char c = f.charAt(k);
        hex &= isHex(c);
        letter |= (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      }
      if (hex) {
        hexFields++;
        if (letter) {
          withLetters++;
        }
      }
    }
    return hexFields >= 8 && hexFields >= 0.8 * fields.size() && withLetters >= 2;
  }

  // ------------------------------------------------------------------ armour

  /** {@code _PGP_BEGIN_RE.fullmatch} / {@code _PGP_END_RE.fullmatch}: the armour kind, or null. */
  private static String pgp(String s, String prefix) {
    if (!s.startsWith(prefix) || !s.endsWith("-----") || s.length() < prefix.length() + 1 + 5) {
      return null;
    }
    String kind = s.substring(prefix.length(), s.length() - 5);
    for (int i = 0; i < kind.length(); i++) {
      char c = kind.charAt(i);
      if (!(isUpper(c) || c == ' ')) {
        return null;
      }
    }
    return kind;
  }

  /** {@code _ARMOR_HEADER_RE.fullmatch}: {@code [A-Za-z][A-Za-z-]*: .*}. */
  private static boolean armorHeader(String s) {
    if (s.isEmpty() || !(isUpper(s.charAt(0)) || isLower(s.charAt(0)))) {
      return false;
    }
    int i = 1;
    while (i < s.length() && (isUpper(s.charAt(i)) || isLower(s.charAt(i)) || s.charAt(i) == '-')) {
      i++;
    }
    return s.startsWith(": ", i);
  }

  /** {@code _BASE64_TAIL_RE.fullmatch}: {@code [A-Za-z0-9+/]+={1,2}}. */
  private static boolean base64Tail(String s) {
    int i = 0;
    while (i < s.length() && isBase64(s.charAt(i))) {
      i++;
    }
    int eq = s.length() - i;
    return i > 0 && (eq == 1 || eq == 2) && s.substring(i).chars().allMatch(c -> c == '=');
  }

  /** {@code _UU_BEGIN_RE.match}: {@code begin [0-7]{3,4} \S}. */
  private static boolean uuBegin(PyUnicode u, String line) {
    if (!line.startsWith("begin ")) {
      return false;
    }
    int r = 0;
    while (6 + r < line.length() && line.charAt(6 + r) >= '0' && line.charAt(6 + r) <= '7') {
      r++;
    }
    if (r != 3 && r != 4) {
      return false;
    }
    int at = 6 + r;
    return at + 1 < line.length() && line.charAt(at) == ' ' && !u.isSpace(line.codePointAt(at + 1));
  }

  // ------------------------------------------------------------------ the flags

  /** {@code encoded_line_flags}: whether each line is removed. */
  static boolean[] flags(PyUnicode u, String[] lines) {
    int n = lines.length;
    boolean[] drop = new boolean[n];
    int i = 0;
    while (i < n) {
      String line = lines[i];
      if (PyUnicode.length(line) < 11) {
        i++;
        continue;
      }
      String stripped = u.strip(line);
      String kind = pgp(stripped, "-----BEGIN PGP ");
      if (kind != null) {
        drop[i] = true;
        int j = i + 1;
        if (kind.equals("SIGNED MESSAGE")) {
          while (j < n && armorHeader(u.strip(lines[j]))) {
            drop[j] = true;
            j++;
          }
          i = j;
          continue;
        }
        int end = -1;
        for (int k = j; k < n; k++) {
          if (pgp(u.strip(lines[k]), "-----END PGP ") != null) {
            end = k;
            break;
          }
        }
        if (end >= 0) {
          for (int k = j; k <= end; k++) {
            drop[k] = true;
          }
          i = end + 1;
          continue;
        }
        while (j < n) {
          String t = u.strip(lines[j]);
          if (!(t.isEmpty() || armorHeader(t) || isEncodedLine(u, lines[j], 4) || t.startsWith("="))) {
            break;
          }
          drop[j] = true;
          j++;
        }
        i = j;
        continue;
      }
      if (uuBegin(u, line)) {
        int j = i + 1;
        while (j < n && u.strip(lines[j]).isEmpty()) {
          j++;
        }
        if (j < n && (uuFull(rstrip(u, lines[j])) || isUuLine(u, lines[j]))) {
          int k = j;
          while (k < n && !rstrip(u, lines[k]).equals("end") && (isUuLine(u, lines[k]) || u.strip(lines[k]).isEmpty())) {
            k++;
          }
          i = dropThroughEnd(u, lines, drop, i, k);
          continue;
        }
      }
      if (isUuBodyLine(u, line) && i + 1 < n && isUuBodyLine(u, lines[i + 1])) {
        int k = i;
        while (k < n && isUuBodyLine(u, lines[k])) {
          k++;
        }
        while (k < n && isUuLine(u, lines[k])) {
          k++;
        }
        i = dropThroughEnd(u, lines, drop, i, k);
        continue;
      }
      if (isEncodedLine(u, line, 40) && i + 1 < n && isEncodedLine(u, lines[i + 1], 40)) {
        int width = PyUnicode.length(stripped);
        int k = i;
        while (k < n && isEncodedLine(u, lines[k], 40)) {
          k++;
        }
        String last = k < n ? u.strip(lines[k]) : "";
        int lastLen = PyUnicode.length(last);
        if (0 < lastLen && lastLen <= width && (isEncodedLine(u, last, 2) || base64Tail(last))) {
          k++;
        }
        for (int t = i; t < k; t++) {
          drop[t] = true;
        }
        i = k;
        continue;
      }
      if (isHexDumpLine(u, line)) {
        drop[i] = true;
      }
      i++;
    }
    return drop;
  }

  /** {@code _drop_through_end}. */
  private static int dropThroughEnd(PyUnicode u, String[] lines, boolean[] drop, int start, int stop) {
    if (stop < lines.length && rstrip(u, lines[stop]).equals("end")) {
      stop++;
    }
    for (int t = start; t < stop; t++) {
      drop[t] = true;
    }
    return stop;
  }
}
