/*{
    "DESCRIPTION": "Pixelate: square cells of one colour, sampled at each cell's centre. Cell size is in output pixels.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "cellSize", "LABEL": "Cell size (pixels)", "TYPE": "float", "DEFAULT": 12.0, "MIN": 1.0, "MAX": 96.0, "IDENTITY": 1.0},
        {"NAME": "gap", "LABEL": "Grid gap", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 0.5}
    ]
}*/

void main() {
    float cell = max(cellSize, 1.0);
    vec2 idx = floor(gl_FragCoord.xy / cell);
    vec2 uv = (idx + 0.5) * cell / RENDERSIZE;
    vec4 c = IMG_NORM_PIXEL(inputImage, clamp(uv, vec2(0.0), vec2(1.0)));
    // A dark grid line of `gap` cells' width at the cell edges (LED-wall look).
    vec2 f = fract(gl_FragCoord.xy / cell);
    float edge = (gap > 0.0 && (min(f.x, f.y) < gap)) ? 0.0 : 1.0;
    gl_FragColor = vec4(c.rgb * edge, c.a);
}
