module github.com/libratetrack/libratetrack/bindings/go/peersbench

go 1.26.0

require github.com/libratetrack/libratetrack/bindings/go v0.0.0

require golang.org/x/time v0.16.0

replace github.com/libratetrack/libratetrack/bindings/go => ../
