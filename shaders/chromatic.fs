/*{
    "DESCRIPTION": "Chromatic aberration: red and blue pulled apart along an angle or out from the centre. Amount 0 leaves the picture untouched.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Color", "Glitch"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.008, "MIN": 0.0, "MAX": 0.05, "IDENTITY": 0.0},
        {"NAME": "angle", "LABEL": "Angle (degrees)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -180.0, "MAX": 180.0},
        {"NAME": "radial", "LABEL": "Radial", "TYPE": "float", "DEFAULT": 0.5, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

varying vec2 splitDir;     // from chromatic.vs

void main() {
    vec2 uv = isf_FragNormCoord;
    vec2 dir = splitDir;
    vec2 fromCentre = (uv - 0.5) * 2.0;
    // Offsets in picture heights, so the split is the same in x and y on screen.
    vec2 d = mix(dir, fromCentre, radial) * amount * vec2(RENDERSIZE.y / RENDERSIZE.x, 1.0);
    vec4 c = IMG_THIS_PIXEL(inputImage);
    float r = IMG_NORM_PIXEL(inputImage, uv + d).r;
    float b = IMG_NORM_PIXEL(inputImage, uv - d).b;
    gl_FragColor = vec4(r, c.g, b, c.a);
}
