package main

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chartSeries is one configuration's points: every trial of its rate
// searches (all rounds), offered and delivered in Mpps.
type chartSeries struct {
	name   string
	points []trial
}

// Distinct colours and markers, one per configuration, in order.
var palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
	{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
}

// rateChart draws delivered against offered rate, one line per series
// (points sorted by offered rate), and the lossless diagonal, as a PNG.
func rateChart(title string, series []chartSeries) ([]byte, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered, Mpps (generator's achieved rate)"
	p.Y.Label.Text = "delivered to the real servers, Mpps"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	top := 0.0
	for i, s := range series {
		if len(s.points) == 0 {
			continue
		}
		pts := slices.Clone(s.points)
		slices.SortFunc(pts, func(a, b trial) int {
			switch {
			case a.offered < b.offered:
				return -1
			case a.offered > b.offered:
				return 1
			}
			return 0
		})
		xy := make(plotter.XYs, len(pts))
		for j, t := range pts {
			xy[j].X, xy[j].Y = t.offered/1e6, t.delivered/1e6
			top = max(top, xy[j].X, xy[j].Y)
		}
		l, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.name, err)
		}
		c := palette[i%len(palette)]
		l.Color, sc.Color = c, c
		l.Width = vg.Points(1)
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	if top == 0 {
		return nil, fmt.Errorf("chart %q: no points", title)
	}
	diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: top, Y: top}})
	if err != nil {
		return nil, err
	}
	diag.Color = color.RGBA{0, 0, 0, 0x60}
	diag.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(diag)
	p.Legend.Add("lossless (delivered = offered)", diag)
	p.X.Min, p.Y.Min = 0, 0
	w, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	return buf.Bytes(), nil
}

// xySeries is one line of a scaling chart: y against x, in order.
type xySeries struct {
	name   string
	points plotter.XYs
	dashed bool
}

// scalingChart draws y against x on a logarithmic x axis (flows, real
// servers), one line per series, as a PNG. Series without points are
// left out; no point at all is an error.
func scalingChart(title, xLabel, yLabel string, series []xySeries) ([]byte, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	n, top := 0, 0.0
	for i, s := range series {
		if len(s.points) == 0 {
			continue
		}
		n++
		for _, pt := range s.points {
			top = max(top, pt.Y)
		}
		l, sc, err := plotter.NewLinePoints(s.points)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.name, err)
		}
		c := palette[i%len(palette)]
		l.Color, sc.Color = c, c
		l.Width = vg.Points(1)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	if n == 0 {
		return nil, fmt.Errorf("chart %q: no points", title)
	}
	// Room above the lines for the legend (one line per series).
	p.Y.Min, p.Y.Max = 0, top*(1.15+0.07*float64(n))
	w, err := p.WriterTo(8*vg.Inch, 6*vg.Inch, "png")
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	return buf.Bytes(), nil
}
