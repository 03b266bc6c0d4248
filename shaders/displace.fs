/*{
    "DESCRIPTION": "Displacement by the model image: the raw model frame (displaceImage) pushes the pixels of the chain around, liquid-like. Angle turns the push direction; scale and drift move the map.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Distortion"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "displaceImage", "LABEL": "Displacement map (model frame)", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.05, "MIN": 0.0, "MAX": 0.3, "IDENTITY": 0.0},
        {"NAME": "angle", "LABEL": "Angle (degrees)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -180.0, "MAX": 180.0},
        {"NAME": "scale", "LABEL": "Map scale", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.25, "MAX": 4.0},
        {"NAME": "drift", "LABEL": "Map drift (per second)", "TYPE": "float", "DEFAULT": 0.02, "MIN": -0.5, "MAX": 0.5}
    ]
}*/

vec2 mirrorRepeat(vec2 uv) {
    return abs(mod(uv + 1.0, 2.0) - 1.0);
}

void main() {
    vec2 uv = isf_FragNormCoord;
    vec2 mapUV = (uv - 0.5) / scale + 0.5 + vec2(drift * TIME, 0.0);
    vec3 m = IMG_NORM_PIXEL(displaceImage, mirrorRepeat(mapUV)).rgb;
    // Red/green push x/y, blue twists: colour regions of the model frame flow in different directions.
    vec2 d = (m.rg - 0.5) * 2.0 + vec2(m.b - 0.5, 0.5 - m.b);
    float a = radians(angle);
    d = mat2(cos(a), sin(a), -sin(a), cos(a)) * d;
    vec4 c = IMG_NORM_PIXEL(inputImage, mirrorRepeat(uv + d * amount));
    gl_FragColor = c;
}
