// Command plot draws the worker sweeps of `jetqueue bench --sweep` as an
// SVG chart: end-to-end throughput and start latency against the number of
// workers. Given several sweep files, it plots the median of each point and
// a bar from its minimum to its maximum.
//
//	go run ./internal/bench/plot -o docs/bench/scaling.svg docs/bench/sweep-*.json
//
// With -table, it reads full runs of `jetqueue bench --json` instead and
// writes the Markdown table of docs/BENCHMARKS.md: the median, minimum and
// maximum of each figure, and whether the median meets its target.
//
//	go run ./internal/bench/plot -table docs/bench/run-*.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/jetqueue/jetqueue/internal/bench"
)

func main() {
	out := flag.String("o", "", "write the SVG or the table to `FILE` (default: standard output)")
	table := flag.Bool("table", false, "read full runs of `jetqueue bench --json` and write a Markdown table of medians")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "Usage: go run ./internal/bench/plot [-o FILE] SWEEP.json ...\n       go run ./internal/bench/plot -table [-o FILE] RUN.json ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}

	if err := run(*out, *table, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(outPath string, table bool, inputs []string) error {
	var w io.Writer = os.Stdout
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			return fmt.Errorf("create %s: %w", outPath, err)
		}
		defer f.Close()
		w = f
	}
	if table {
		return writeTable(w, inputs)
	}

	var sweeps []bench.SweepResult
	for _, path := range inputs {
		s, err := readSweep(path)
		if err != nil {
			return err
		}
		sweeps = append(sweeps, s)
	}
	series, err := summarize(sweeps)
	if err != nil {
		return err
	}
	return writeSVG(w, sweeps[0], len(sweeps), series)
}

func readSweep(path string) (bench.SweepResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return bench.SweepResult{}, err
	}
	var s bench.SweepResult
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s is not the JSON of `jetqueue bench --sweep ... --json`: %w", path, err)
	}
	if len(s.Points) == 0 {
		return s, fmt.Errorf("%s has no points: run `jetqueue bench --sweep 1,2,4,8,16 --json`", path)
	}
	return s, nil
}

// spread is the median, minimum and maximum of one figure over the runs.
type spread struct{ median, min, max float64 }

func spreadOf(values []float64) spread {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	median := sorted[n/2]
	if n%2 == 0 {
		median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return spread{median: median, min: sorted[0], max: sorted[n-1]}
}

// point is one worker count with its figures over all runs.
type point struct {
	workers  int
	e2e      spread
	startP50 spread
	startP99 spread
}

// summarize groups the sweeps' points by worker count. Every sweep must
// have the same worker counts.
func summarize(sweeps []bench.SweepResult) ([]point, error) {
	counts := workerCounts(sweeps[0])
	for _, s := range sweeps[1:] {
		if !slices.Equal(workerCounts(s), counts) {
			return nil, errors.New("the sweeps have different worker counts: plot sweeps of one --sweep list together")
		}
	}

	points := make([]point, len(counts))
	for i, n := range counts {
		var e2e, p50, p99 []float64
		for _, s := range sweeps {
			pt := s.Points[i]
			e2e = append(e2e, pt.E2EJobsPerS)
			p50 = append(p50, pt.StartLatencyP50US)
			p99 = append(p99, pt.StartLatencyP99US)
		}
		points[i] = point{workers: n, e2e: spreadOf(e2e), startP50: spreadOf(p50), startP99: spreadOf(p99)}
	}
	return points, nil
}

func workerCounts(s bench.SweepResult) []int {
	counts := make([]int, len(s.Points))
	for i, p := range s.Points {
		counts[i] = p.Workers
	}
	return counts
}

// Chart geometry, in SVG user units.
const (
	width       = 1000
	height      = 400
	panelWidth  = 400
	panelHeight = 250
	panelTop    = 90
	leftMargin  = 80
	panelGap    = 80
)

// line is one plotted series of a panel.
type line struct {
	name   string
	color  string
	values []spread
}

func writeSVG(w io.Writer, first bench.SweepResult, runs int, points []point) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="16" font-weight="bold">jetqueue: throughput and start latency by number of workers</text>`+"\n", leftMargin)
	fmt.Fprintf(&b, `<text x="%d" y="50" fill="#555">%s</text>`+"\n", leftMargin, html.EscapeString(subtitle(first, runs)))

	workers := make([]int, len(points))
	var e2e, p50, p99 []spread
	for i, p := range points {
		workers[i] = p.workers
		e2e = append(e2e, p.e2e)
		p50 = append(p50, p.startP50)
		p99 = append(p99, p.startP99)
	}
	drawPanel(&b, leftMargin, "end-to-end throughput", "jobs/s", workers,
		[]line{{name: "e2e jobs/s", color: "#1f77b4", values: e2e}})
	drawPanel(&b, leftMargin+panelWidth+panelGap, "start latency, submit to handler", "µs", workers,
		[]line{{name: "p50", color: "#2ca02c", values: p50}, {name: "p99", color: "#d62728", values: p99}})

	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func subtitle(s bench.SweepResult, runs int) string {
	text := fmt.Sprintf("%s, %d cores; %s, nats-server %s; %s jobs per point; ",
		s.Machine.CPUModel, s.Machine.Cores, s.Versions.Go, s.Versions.NATSServer, bench.FormatNumber(float64(s.Parameters.E2EJobs)))
	if runs == 1 {
		return text + "one run"
	}
	return text + fmt.Sprintf("median of %d runs, bars from min to max", runs)
}

// drawPanel draws one chart whose x axis places the worker counts evenly.
func drawPanel(b *strings.Builder, left int, title, unit string, workers []int, lines []line) {
	top, bottom, right := panelTop, panelTop+panelHeight, left+panelWidth

	var maxValue float64
	for _, l := range lines {
		for _, v := range l.values {
			maxValue = math.Max(maxValue, v.max)
		}
	}
	step, ticks := niceTicks(maxValue)
	yMax := step * float64(ticks)
	x := func(i int) float64 {
		if len(workers) == 1 {
			return float64(left + panelWidth/2)
		}
		return float64(left) + 20 + float64(i)*float64(panelWidth-40)/float64(len(workers)-1)
	}
	y := func(v float64) float64 { return float64(bottom) - v/yMax*float64(panelHeight) }

	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14">%s</text>`+"\n", left, top-14, html.EscapeString(title))
	for t := 0; t <= ticks; t++ {
		v := step * float64(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), right, y(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y(v), bench.FormatNumber(v))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, bottom, right, bottom)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, bottom)
	for i, n := range workers {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), bottom+18, n)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">workers</text>`+"\n", left+panelWidth/2, bottom+40)
	fmt.Fprintf(b, `<text transform="translate(%d %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", left-58, top+panelHeight/2, html.EscapeString(unit))

	for li, l := range lines {
		var path []string
		for i, v := range l.values {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(i), y(v.median)))
			if v.max > v.min {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(i), y(v.min), x(i), y(v.max), l.color)
			}
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x(i), y(v.median), l.color)
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), l.color)

		legendY := top + 4 + 16*li
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", left+12, legendY, left+32, legendY, l.color)
		fmt.Fprintf(b, `<text x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", left+38, legendY, html.EscapeString(l.name))
	}
}

// niceTicks returns a tick step of 1, 2 or 5 times a power of ten, and the
// number of steps that reach at least max, aiming at about five.
func niceTicks(max float64) (step float64, ticks int) {
	if max <= 0 {
		return 1, 1
	}
	raw := max / 5
	magnitude := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		step = m * magnitude
		if step >= raw {
			break
		}
	}
	return step, int(math.Ceil(max / step))
}
