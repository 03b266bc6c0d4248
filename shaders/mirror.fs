/*{
    "DESCRIPTION": "Mirror: one half of the picture reflected onto the other, left/right, top/bottom, or both (quad). Flip takes the other half as the source.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Geometry"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "mode", "LABEL": "Mode", "TYPE": "long", "DEFAULT": 0, "VALUES": [0, 1, 2], "LABELS": ["Horizontal", "Vertical", "Quad"]},
        {"NAME": "flip", "LABEL": "Flip source half", "TYPE": "bool", "DEFAULT": false}
    ]
}*/

void main() {
    vec2 uv = isf_FragNormCoord;
    float side = flip ? 1.0 : -1.0;
    // Horizontal keeps the left half (flip: the right); vertical keeps the top half (flip: the bottom).
    if (mode == 0 || mode == 2) uv.x = 0.5 + side * abs(uv.x - 0.5);
    if (mode == 1 || mode == 2) uv.y = 0.5 - side * abs(uv.y - 0.5);
    gl_FragColor = IMG_NORM_PIXEL(inputImage, uv);
}
