package protojs

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// numberParts is a JSON number split into its parts; the slices are
// substrings of the input.
type numberParts struct {
	neg  bool
	intp string // integer digits without leading zero; empty for 0
	frac string // fraction digits with trailing zeros removed
	exp  string // exponent digits with optional sign
}

// parseNumber splits s into numberParts if the whole of s is one number in
// the JSON grammar (RFC 8259 section 6).
func parseNumber(s string) (numberParts, bool) {
	var p numberParts
	if s == "" {
		return p, false
	}
	if s[0] == '-' {
		p.neg = true
		s = s[1:]
		if s == "" {
			return p, false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		p.intp, s = s[:n], s[n:]
	default:
		return p, false
	}
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 2
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		p.frac, s = strings.TrimRight(s[1:n], "0"), s[n:]
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		n := 0
		if s[0] == '+' || s[0] == '-' {
			n = 1
		}
		start := n
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == start {
			return p, false
		}
		p.exp, s = s[:n], s[n:]
	}
	return p, s == ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isPlainInt reports whether s is an optional minus sign followed by
// decimal digits without a superfluous leading zero: the common case that
// needs no normalisation.
func isPlainInt(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// intString returns the integer that the JSON number s denotes as plain
// decimal digits, as protojson does: fractions and exponents are allowed as
// long as the value is integral, for example "1e3" or "1.50e2".
func intString(s string) (string, bool) {
	if isPlainInt(s) {
		return s, true
	}
	p, ok := parseNumber(s)
	if !ok {
		return "", false
	}
	if p.intp == "" && p.frac == "" {
		return "0", true
	}
	exp := 0
	if p.exp != "" {
		e, err := strconv.ParseInt(p.exp, 10, 32)
		if err != nil {
			return "", false
		}
		exp = int(e)
	}
	var num string
	if exp >= 0 {
		if len(p.frac) > exp {
			return "", false
		}
		const maxDigits = 20 // the largest uint64 has 20 digits
		if len(p.intp)+exp > maxDigits {
			return "", false
		}
		num = p.intp + p.frac + strings.Repeat("0", exp-len(p.frac))
	} else {
		if p.frac != "" {
			return "", false
		}
		at := len(p.intp) + exp
		if at < 0 {
			return "", false
		}
		for i := at; i < len(p.intp); i++ {
			if p.intp[i] != '0' {
				return "", false
			}
		}
		num = p.intp[:at]
	}
	if num == "" {
		return "0", true
	}
	if p.neg {
		num = "-" + num
	}
	return num, true
}

// intTypeName names an integer type for error messages.
func intTypeName(bits int, signed bool) string {
	switch {
	case signed && bits == 32:
		return "int32"
	case signed:
		return "int64"
	case bits == 32:
		return "uint32"
	default:
		return "uint64"
	}
}

var errNotInteger = errors.New("not an integer")

// intFromFloat converts a JavaScript number to a signed integer of the given
// size. Numbers of 2^53 and more are read as the decimal digits
// JSON.stringify prints for them, as protojson would see them.
func intFromFloat(f float64, bits int) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, errNotInteger
	}
	if math.Abs(f) < 1<<53 {
		return checkInt(int64(f), bits)
	}
	n, err := strconv.ParseInt(strconv.FormatFloat(f, 'f', -1, 64), 10, bits)
	if err != nil {
		return 0, errOutOfRange
	}
	return n, nil
}

// uintFromFloat is intFromFloat for unsigned integers.
func uintFromFloat(f float64, bits int) (uint64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, errNotInteger
	}
	if f < 0 {
		return 0, errOutOfRange
	}
	if f < 1<<53 {
		return checkUint(uint64(f), bits)
	}
	n, err := strconv.ParseUint(strconv.FormatFloat(f, 'f', -1, 64), 10, bits)
	if err != nil {
		return 0, errOutOfRange
	}
	return n, nil
}

var errOutOfRange = errors.New("out of range")

func checkInt(n int64, bits int) (int64, error) {
	if bits == 32 && (n < math.MinInt32 || n > math.MaxInt32) {
		return 0, errOutOfRange
	}
	return n, nil
}

func checkUint(n uint64, bits int) (uint64, error) {
	if bits == 32 && n > math.MaxUint32 {
		return 0, errOutOfRange
	}
	return n, nil
}

// intFromString parses a signed integer from a string as protojson does.
func intFromString(s string, bits int) (int64, error) {
	if strings.TrimSpace(s) != s {
		return 0, errNotInteger
	}
	digits, ok := intString(s)
	if !ok {
		return 0, errNotInteger
	}
	n, err := strconv.ParseInt(digits, 10, bits)
	if err != nil {
		return 0, errOutOfRange
	}
	return n, nil
}

// uintFromString parses an unsigned integer from a string as protojson
// does.
func uintFromString(s string, bits int) (uint64, error) {
	if strings.TrimSpace(s) != s {
		return 0, errNotInteger
	}
	digits, ok := intString(s)
	if !ok {
		return 0, errNotInteger
	}
	n, err := strconv.ParseUint(digits, 10, bits)
	if err != nil {
		return 0, errOutOfRange
	}
	return n, nil
}

// floatFromString parses a float from a string as protojson does: "NaN",
// "Infinity", "-Infinity" or a JSON number that fits the size.
func floatFromString(s string, bits int) (float64, bool) {
	switch s {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if _, ok := parseNumber(s); !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, false
	}
	return f, true
}

// intFromBig converts a JavaScript BigInt to a signed integer.
func intFromBig(b *big.Int, bits int) (int64, error) {
	if b == nil || !b.IsInt64() {
		return 0, errOutOfRange
	}
	return checkInt(b.Int64(), bits)
}

// uintFromBig converts a JavaScript BigInt to an unsigned integer.
func uintFromBig(b *big.Int, bits int) (uint64, error) {
	if b == nil || !b.IsUint64() {
		return 0, errOutOfRange
	}
	return checkUint(b.Uint64(), bits)
}

// numberError describes an integer that does not fit.
func numberError(err error, typ string, shown string) error {
	if err == errOutOfRange {
		return fmt.Errorf("%s value %s out of range", typ, shown)
	}
	return fmt.Errorf("invalid %s value %s", typ, shown)
}
