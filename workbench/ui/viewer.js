// ESM source of workbench.ui.viewer.StructureViewer: a 3Dmol.js view of one configuration.
//
// Compiled together with 3Dmol.js into viewer.bundle.js by scripts/build_viewer_bundle.sh, so the
// served page never fetches the library from a CDN.  Coordinates arrive as (extended) XYZ text in
// Angstrom; box_nm arrives in nm and is converted to Angstrom here for the cell outline.
import * as $3Dmol from "3dmol"

const ELEMENT_COLORS = {H: "#f2f2f2", O: "#e02020", C: "#707070", N: "#3050f8", Ar: "#80d1e3"}

function atomStyle(style) {
  const colorscheme = {prop: "elem", map: ELEMENT_COLORS}
  if (style === "spheres") {
    return {sphere: {scale: 1.0, colorscheme}}
  }
  if (style === "sticks") {
    return {stick: {radius: 0.18, colorscheme}}
  }
  return {stick: {radius: 0.12, colorscheme}, sphere: {scale: 0.28, colorscheme}}
}

function cellEdges(box_nm) {
  // the 12 edges of an orthorhombic cell with one corner at the origin, in Angstrom
  const [a, b, c] = box_nm.map((x) => 10 * x)
  const corners = []
  for (const x of [0, a]) {
    for (const y of [0, b]) {
      for (const z of [0, c]) {
        corners.push({x, y, z})
      }
    }
  }
  const edges = []
  for (let i = 0; i < 8; i++) {
    for (let j = i + 1; j < 8; j++) {
      const d = i ^ j  // corners differing in exactly one coordinate share an edge
      if (d === 1 || d === 2 || d === 4) {
        edges.push([corners[i], corners[j]])
      }
    }
  }
  return edges
}

export function render({model, el}) {
  const container = document.createElement("div")
  container.className = "workbench-structure-viewer"
  container.style.position = "relative"
  container.style.width = "100%"
  container.style.height = "100%"
  container.style.minHeight = "100px"
  el.appendChild(container)

  let viewer = null
  let hasView = false  // whether a camera worth keeping exists (after the first non-empty structure)

  function ensureViewer() {
    if (viewer === null) {
      viewer = $3Dmol.createViewer(container, {backgroundColor: model.background, antialias: true})
    }
    return viewer
  }

  function drawCell() {
    const v = ensureViewer()
    v.removeAllShapes()
    const box = model.box_nm
    if (box && box.length === 3 && box.every((x) => x > 0)) {
      for (const [start, end] of cellEdges(box)) {
        v.addCylinder({start, end, radius: 0.04, color: model.cell_color, fromCap: 1, toCap: 1})
      }
    }
  }

  function drawStructure() {
    const v = ensureViewer()
    const view = hasView ? v.getView() : null
    v.removeAllModels()
    let natoms = 0
    if (model.xyz && model.xyz.trim()) {
      const m = v.addModel(model.xyz, "xyz")
      m.setStyle({}, atomStyle(model.style))
      natoms = m.selectedAtoms({}).length
    }
    drawCell()
    if (view !== null && natoms > 0) {
      v.setView(view)  // keep the user's rotation/zoom when only the coordinates changed
    } else if (natoms > 0) {
      v.zoomTo()
      hasView = true
    }
    v.render()
    container.dataset.atoms = String(natoms)
  }

  function restyle() {
    if (viewer === null) {
      return
    }
    viewer.setStyle({}, atomStyle(model.style))
    viewer.render()
  }

  model.on("xyz", drawStructure)
  model.on("style", restyle)
  model.on(["box_nm", "cell_color"], () => { drawCell(); viewer.render() })
  model.on("background", () => { ensureViewer().setBackgroundColor(model.background); viewer.render() })
  model.on("resize", () => { if (viewer !== null) { viewer.resize(); viewer.render() } })
  model.on("after_layout", () => {
    // the container has its final size only now: create the viewer (3Dmol sizes its canvas from it)
    if (viewer === null) {
      drawStructure()
    }
    viewer.resize()
    viewer.render()
  })
  model.on("remove", () => {
    if (viewer !== null) {
      viewer.clear()
      viewer = null
    }
  })
}
