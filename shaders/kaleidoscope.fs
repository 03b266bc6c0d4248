/*{
    "DESCRIPTION": "Kaleidoscope: folds the picture into mirrored wedges around the centre. Sides can be fractional, so they can be modulated smoothly.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Geometry", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "sides", "LABEL": "Sides", "TYPE": "float", "DEFAULT": 6.0, "MIN": 2.0, "MAX": 16.0},
        {"NAME": "angle", "LABEL": "Angle (degrees)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -180.0, "MAX": 180.0},
        {"NAME": "spin", "LABEL": "Spin (degrees per second)", "TYPE": "float", "DEFAULT": 10.0, "MIN": -180.0, "MAX": 180.0},
        {"NAME": "zoom", "LABEL": "Zoom", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.25, "MAX": 4.0, "IDENTITY": 1.0},
        {"NAME": "center", "LABEL": "Sample centre", "TYPE": "point2D", "DEFAULT": [0.5, 0.5], "MIN": [0.0, 0.0], "MAX": [1.0, 1.0]}
    ]
}*/

// Mirrored repeat: 0..1 stays, 1..2 runs back, so folded coordinates never hit a clamped edge.
vec2 mirrorRepeat(vec2 uv) {
    return abs(mod(uv + 1.0, 2.0) - 1.0);
}

void main() {
    float aspect = RENDERSIZE.x / RENDERSIZE.y;
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(aspect, 1.0);
    float r = length(p) / zoom;
    float seg = 6.28318530718 / max(sides, 1.0);
    float a = atan(p.y, p.x) + radians(angle + spin * TIME);
    a = mod(a, seg);
    a = min(a, seg - a);                       // every other wedge mirrored: no seams
    vec2 q = r * vec2(cos(a), sin(a));
    vec2 uv = q / vec2(aspect, 1.0) + center;
    gl_FragColor = vec4(IMG_NORM_PIXEL(inputImage, mirrorRepeat(uv)).rgb, 1.0);
}
