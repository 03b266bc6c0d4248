/*{
    "DESCRIPTION": "Beat flash and strobe: flash (0..1) screens a colour over the picture; the strobe event flashes fully for one frame; invert blends towards the negative. Route onsets to flash.",
    "CREDIT": "vj",
    "ISFVSN": "2.0",
    "VSN": "1.0",
    "CATEGORIES": ["Color", "Audio Reactive"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "flash", "LABEL": "Flash", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "flashColor", "LABEL": "Flash colour", "TYPE": "color", "DEFAULT": [1.0, 1.0, 1.0, 1.0]},
        {"NAME": "invert", "LABEL": "Invert", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0, "IDENTITY": 0.0},
        {"NAME": "strobe", "LABEL": "Strobe", "TYPE": "event"}
    ]
}*/

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    vec3 c = mix(src.rgb, 1.0 - src.rgb, invert);
    float f = strobe ? 1.0 : flash;
    vec3 k = flashColor.rgb * flashColor.a * f;
    c = 1.0 - (1.0 - c) * (1.0 - k);               // screen: brightens towards the flash colour
    gl_FragColor = vec4(c, src.a);
}
