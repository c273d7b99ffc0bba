variable "name" {
  type        = string
  description = "Name of every resource this module creates (hubfleet-<course>)."
}

variable "tag" {
  type        = string
  description = "Tag put on every resource (hubfleet-course=<course>)."
}

variable "external_network" {
  type        = string
  description = "External network the course router uses as its gateway."
}

variable "network_name" {
  type        = string
  description = "An existing network to use instead of creating one; empty to create it."
}

variable "subnet_cidr" {
  type        = string
  description = "Address range of the subnet created for the course."
}

variable "dns_nameservers" {
  type        = list(string)
  description = "Resolvers of the created subnet."
}

variable "operator_cidr" {
  type        = string
  description = "The only range SSH is open to."
}
