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

// writeChart draws grants/s and lock requests per grant against the number
// of contenders, one line per retry interval, side by side, as SVG (or PNG
// when path ends in .png).
func writeChart(path string, rows []row) error {
	if len(rows) == 0 {
		return fmt.Errorf("no sweep results to draw")
	}
	var retries []float64
	for _, r := range rows {
		if !slices.Contains(retries, r.RetryMS) {
			retries = append(retries, r.RetryMS)
		}
	}
	slices.Sort(retries)
	lat := rows[0].LatencyMS

	tput := plot.New()
	tput.Title.Text = fmt.Sprintf("Throughput (R = %g ms)", lat)
	tput.X.Label.Text = "contending processes"
	tput.Y.Label.Text = "grants per second"
	cost := plot.New()
	cost.Title.Text = "Cost"
	cost.X.Label.Text = "contending processes"
	cost.Y.Label.Text = "lock requests per grant (PUTs dashed)"
	colors := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	}
	var maxN float64
	for i, retry := range retries {
		var perSec, reqs, puts plotter.XYs
		for _, r := range rows {
			if r.RetryMS != retry {
				continue
			}
			n := float64(r.Workers)
			maxN = max(maxN, n)
			perSec = append(perSec, plotter.XY{X: n, Y: r.PerSecond})
			reqs = append(reqs, plotter.XY{X: n, Y: r.LockRequests})
			puts = append(puts, plotter.XY{X: n, Y: r.LockPUT})
		}
		c := colors[i%len(colors)]
		name := fmt.Sprintf("retry %g ms", retry)
		if err := addLine(tput, perSec, c, nil, name); err != nil {
			return err
		}
		if err := addLine(cost, reqs, c, nil, name+": all"); err != nil {
			return err
		}
		if err := addLine(cost, puts, c, []vg.Length{vg.Points(4), vg.Points(3)}, name+": PUT"); err != nil {
			return err
		}
	}
	if lat > 0 {
		limit := 1000 / (4 * lat)
		l, err := plotter.NewLine(plotter.XYs{{X: 1, Y: limit}, {X: maxN, Y: limit}})
		if err != nil {
			return err
		}
		l.Color = color.Gray{Y: 0x80}
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		tput.Add(l)
		tput.Legend.Add("limit 1/(4R)", l)
	}
	tput.Y.Min, cost.Y.Min = 0, 0
	tput.Legend.Top, cost.Legend.Top = false, true
	tput.Legend.Left, cost.Legend.Left = true, true
	var ticks []plot.Tick
	for _, r := range rows {
		n := float64(r.Workers)
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == n }) {
			ticks = append(ticks, plot.Tick{Value: n, Label: fmt.Sprint(r.Workers)})
		}
	}
	for _, p := range []*plot.Plot{tput, cost} {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	tput.Add(plotter.NewGrid())
	cost.Add(plotter.NewGrid())

	const w, h = 11 * vg.Inch, 4 * vg.Inch
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	} = vgsvg.New(w, h)
	if strings.HasSuffix(path, ".png") {
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{tput, cost}}
	canvases := plot.Align(plots, tiles, dc)
	tput.Draw(canvases[0][0])
	cost.Draw(canvases[0][1])
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
