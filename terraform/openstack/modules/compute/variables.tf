variable "name" {
  type        = string
  description = "Name of the course keypair (hubfleet-<course>)."
}

variable "tag" {
  type        = string
  description = "Tag put on every resource (hubfleet-course=<course>)."
}

variable "course_name" {
  type        = string
  description = "The course, written into each server's metadata."
}

variable "image_name" {
  type        = string
  description = "Base image the hosts boot from."
}

variable "ssh_public_key" {
  type        = string
  description = "The course's SSH public key."
}

variable "ssh_user" {
  type        = string
  description = "Login user of the image, returned with each host."
}

variable "hosts" {
  type = list(object({
    name        = string
    role        = string
    flavor      = string
    volume_size = number
    user_data   = string
  }))
  description = "The hosts, hub first (see the root module's variable)."
}

variable "network_id" {
  type        = string
  description = "Network the hosts attach to."
}

variable "subnet_ready" {
  type        = string
  description = "Only an ordering edge: the floating IP waits for the router interface."
}

variable "secgroup_id" {
  type        = string
  description = "The course's security group."
}

variable "external_network" {
  type        = string
  description = "External network the hub's floating IP comes from."
}
