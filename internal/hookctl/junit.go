package hookctl

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/apihooks/apihooks/internal/hookctl/hookname"
	"github.com/apihooks/apihooks/internal/hookctl/hooktest"
)

// JUnit XML, as CI systems read it: one suite per case file.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// writeJUnit writes the results of a test run as JUnit XML; took are the
// durations of the results.
func writeJUnit(w io.Writer, results []*hooktest.CaseResult, took []time.Duration) error {
	out := junitSuites{}
	index := map[string]int{}
	var total time.Duration
	for i, r := range results {
		c := r.Case
		si, ok := index[c.File]
		if !ok {
			si = len(out.Suites)
			index[c.File] = si
			out.Suites = append(out.Suites, junitSuite{Name: c.File})
		}
		s := &out.Suites[si]
		tc := junitCase{Name: c.Name, Classname: hookname.Format(c.Hook), File: c.File, Line: c.Line, Time: seconds(took[i])}
		if !r.Pass {
			text := strings.Join(r.Problems, "\n") + "\nexpected: " + compactJSON(r.Expected)
			if r.Actual != nil {
				text += "\nactual:   " + compactJSON(r.Actual)
			}
			tc.Failure = &junitFailure{Message: strings.Join(r.Problems, "; "), Text: text}
			s.Failures++
			out.Failures++
		}
		s.Tests++
		out.Tests++
		s.Cases = append(s.Cases, tc)
		total += took[i]
	}
	out.Time = seconds(total)
	for i := range out.Suites {
		var d time.Duration
		for j, r := range results {
			if r.Case.File == out.Suites[i].Name {
				d += took[j]
			}
		}
		out.Suites[i].Time = seconds(d)
	}
	return out.write(w)
}

// write writes the report as an XML document.
func (out junitSuites) write(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// writeJUnitLoadFailure writes a report of one failed test for a manifest
// or case files that did not load: no case ran.
func writeJUnitLoadFailure(w io.Writer, manifest string, err error) error {
	tc := junitCase{Name: "the manifest and its case files load", Classname: "hookctl", File: manifest, Time: seconds(0),
		Failure: &junitFailure{Message: "the manifest or a case file is invalid: no case ran", Text: err.Error()}}
	out := junitSuites{Tests: 1, Failures: 1, Time: seconds(0),
		Suites: []junitSuite{{Name: manifest, Tests: 1, Failures: 1, Time: seconds(0), Cases: []junitCase{tc}}}}
	return out.write(w)
}
