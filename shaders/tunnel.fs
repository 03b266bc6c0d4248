/*{
    "DESCRIPTION": "Tunnel: the picture wrapped onto the walls of an endless tube flying towards the viewer. Mix fades between the flat picture and the tunnel.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Distortion", "Geometry"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "speed", "LABEL": "Speed (per second)", "TYPE": "float", "DEFAULT": 0.3, "MIN": -2.0, "MAX": 2.0},
        {"NAME": "twist", "LABEL": "Twist", "TYPE": "float", "DEFAULT": 0.3, "MIN": -2.0, "MAX": 2.0},
        {"NAME": "repeats", "LABEL": "Repeats around", "TYPE": "float", "DEFAULT": 2.0, "MIN": 1.0, "MAX": 8.0},
        {"NAME": "radius", "LABEL": "Tube radius", "TYPE": "float", "DEFAULT": 0.5, "MIN": 0.1, "MAX": 2.0},
        {"NAME": "wet", "LABEL": "Mix", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0}
    ]
}*/

// Triangle wave of period 2: mirrored repeat, so texture edges never show a seam.
float tri(float x) {
    return abs(mod(x + 1.0, 2.0) - 1.0);
}

void main() {
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(RENDERSIZE.x / RENDERSIZE.y, 1.0);
    float r = max(length(p), 1e-3);
    float depth = radius / r + TIME * speed;
    // A whole number of repeats keeps the angle seamless where atan wraps from pi to -pi.
    float around = atan(p.y, p.x) / 3.14159265 * floor(repeats + 0.5) + twist * depth;
    vec3 wall = IMG_NORM_PIXEL(inputImage, vec2(tri(around), tri(depth))).rgb;
    wall *= smoothstep(0.0, 0.35, r);             // the far end fades to black instead of aliasing
    vec4 src = IMG_THIS_PIXEL(inputImage);
    gl_FragColor = vec4(mix(src.rgb, wall, wet), src.a);
}
