package main

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// writeChart draws four panels against the number of contenders, one
// line per setting (retry interval and hold): throughput as a share of the
// limit 1/(hold+4R), lock requests per grant, Jain's fairness index of the
// grants per worker, and the largest bypass with the bound 2N. It writes
// SVG, or PNG when path ends in .png.
func writeChart(path string, rows []row) error {
	if len(rows) == 0 {
		return fmt.Errorf("no sweep results to draw")
	}
	type line struct {
		retry, hold float64
		def         bool
	}
	var lines []line
	for _, r := range rows {
		l := line{r.RetryMS, r.HoldMS, r.DefaultRetry}
		if !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	lat := rows[0].LatencyMS

	panel := func(title, y string) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "contending processes"
		p.Y.Label.Text = y
		p.Y.Min = 0
		return p
	}
	tput := panel(fmt.Sprintf("Throughput (R = %g ms)", lat), "% of the limit 1/(hold + 4R)")
	cost := panel("Cost", "lock requests per grant (PUTs dashed)")
	fair := panel("Fairness", "Jain's index of grants per process")
	fair.Y.Max = 1.05
	bypass := panel("Bypass", "most grants to others during one wait")
	colors := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
	dashed := []vg.Length{vg.Points(4), vg.Points(3)}
	var minN, maxN float64
	for i, l := range lines {
		var pct, reqs, puts, jains, bypasses plotter.XYs
		for _, r := range rows {
			if (line{r.RetryMS, r.HoldMS, r.DefaultRetry}) != l {
				continue
			}
			n := float64(r.Workers)
			if minN == 0 || n < minN {
				minN = n
			}
			maxN = max(maxN, n)
			pct = append(pct, plotter.XY{X: n, Y: r.LimitPct})
			reqs = append(reqs, plotter.XY{X: n, Y: r.LockRequests})
			puts = append(puts, plotter.XY{X: n, Y: r.LockPUT})
			jains = append(jains, plotter.XY{X: n, Y: r.Jain})
			bypasses = append(bypasses, plotter.XY{X: n, Y: float64(r.MaxBypass)})
		}
		c := colors[i%len(colors)]
		name := fmt.Sprintf("retry %g ms", l.retry)
		if l.def {
			name = fmt.Sprintf("default retry (%g ms)", l.retry)
		}
		if l.hold > 0 {
			name += fmt.Sprintf(", hold %g ms", l.hold)
		}
		for _, add := range []struct {
			p      *plot.Plot
			xys    plotter.XYs
			dashes []vg.Length
			name   string
		}{
			{tput, pct, nil, name}, {cost, reqs, nil, name + ": all"}, {cost, puts, dashed, name + ": PUT"},
			{fair, jains, nil, name}, {bypass, bypasses, nil, name},
		} {
			if err := addLine(add.p, add.xys, c, add.dashes, add.name); err != nil {
				return err
			}
		}
	}
	// The bound the fairness work aims at: 2 grants per contender.
	bound, err := plotter.NewLine(plotter.XYs{{X: minN, Y: 2 * minN}, {X: maxN, Y: 2 * maxN}})
	if err != nil {
		return err
	}
	bound.Color = color.Gray{Y: 0x80}
	bound.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	bypass.Add(bound)
	bypass.Legend.Add("2 × contenders", bound)

	var ticks []plot.Tick
	for _, r := range rows {
		n := float64(r.Workers)
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == n }) {
			ticks = append(ticks, plot.Tick{Value: n, Label: fmt.Sprint(r.Workers)})
		}
	}
	plots := [][]*plot.Plot{{tput, cost}, {fair, bypass}}
	for _, row := range plots {
		for _, p := range row {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.ConstantTicks(ticks)
			p.Legend.Top, p.Legend.Left = false, true
			p.Add(plotter.NewGrid())
		}
	}
	cost.Legend.Top, bypass.Legend.Top = true, true

	const w, h = 11 * vg.Inch, 8 * vg.Inch
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	} = vgsvg.New(w, h)
	if strings.HasSuffix(path, ".png") {
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i, row := range plots {
		for j, p := range row {
			p.Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, name string) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, s.Color = c, c
	l.Dashes = dashes
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}
