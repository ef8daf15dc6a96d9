module github.com/libratetrack/libratetrack/bindings/go

go 1.19
