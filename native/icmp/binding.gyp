{
  "targets": [
    {
      "target_name": "faultline_icmp",
      "sources": ["icmp.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
