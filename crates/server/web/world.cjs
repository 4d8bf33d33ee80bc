// world.cjs — turns world-atlas' 110m TopoJSON into the GeoJSON the dashboard's map registers (dist/world.json).
// Usage: node world.cjs OUT_FILE. Deterministic: same packages in, same bytes out (checked by check.sh).
// Each feature keeps only `properties.name` (ECharts' registerMap keys regions by it); coordinates are rounded to
// 0.01° (the 110m data is coarser than that) and Antarctica is dropped, which keeps the file small; rings crossing
// the antimeridian are unwrapped so a flat map draws them in one piece.
"use strict";
const fs = require("fs");
const topojson = require("topojson-client");
const topo = require("world-atlas/countries-110m.json");

const round = (v) => Math.round(v * 100) / 100;
const roundCoords = (c) => (typeof c[0] === "number" ? [round(c[0]), round(c[1])] : c.map(roundCoords));

// A ring that crosses the antimeridian (Fiji, Chukotka) would be drawn across the whole flat map: move its western
// points east by 360° so it stays in one piece just past 180°.
const crosses = (ring) => ring.some((p, i) => i > 0 && Math.abs(p[0] - ring[i - 1][0]) > 180);
const unwrapRing = (ring) => (crosses(ring) ? ring.map(([x, y]) => [x < 0 ? x + 360 : x, y]) : ring);
const unwrap = (geometry) =>
  geometry.type === "Polygon"
    ? geometry.coordinates.map(unwrapRing)
    : geometry.coordinates.map((polygon) => polygon.map(unwrapRing));

const all = topojson.feature(topo, topo.objects.countries);
const features = all.features
  .filter((f) => f.properties.name !== "Antarctica" && f.geometry)
  .map((f) => ({
    type: "Feature",
    properties: { name: f.properties.name },
    geometry: { type: f.geometry.type, coordinates: roundCoords(unwrap(f.geometry)) },
  }));
fs.writeFileSync(process.argv[2], JSON.stringify({ type: "FeatureCollection", features }) + "\n");
